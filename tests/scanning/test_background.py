"""BackgroundScan (csvault/scanning/background.py): the stream sent from a thread, its
verdict, its errors and its stop. Pure code: the scanner side is a plain object here; the
scan with a real clamd is in tests/integration/test_ingest_during_scan.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

import pytest

from csvault.scanning import ScannerUnavailable, ScanResult
from csvault.scanning.background import BackgroundScan, ScanDropped, Watch
from csvault.scanning.base import Settled


class Pending:
    """A verdict that comes when :attr:`decided` is set."""

    def __init__(self, verdict: ScanResult) -> None:
        self.verdict = verdict
        self.decided = threading.Event()
        self.closed = 0

    def ready(self, timeout: float) -> bool:
        return self.decided.wait(timeout)

    def result(self) -> ScanResult:
        self.decided.wait()
        return self.verdict

    def close(self) -> None:
        self.closed += 1


def streaming(
    chunks: Iterable[bytes], received: list[bytes], pending: object, gate: threading.Event
) -> Callable[[Watch], object]:
    """A start function: reads every chunk through ``watch`` (waiting for ``gate`` before
    each), then returns ``pending``."""

    def start(watch: Watch) -> object:
        def gated() -> Iterator[bytes]:
            for chunk in chunks:
                assert gate.wait(5)
                yield chunk

        for chunk in watch(gated()):
            received.append(chunk)
        return pending

    return start


def test_not_ready_until_the_stream_is_sent_and_the_scanner_decided() -> None:
    received: list[bytes] = []
    pending = Pending(ScanResult.found("Eicar"))
    gate = threading.Event()
    scan = BackgroundScan(streaming([b"a", b"b"], received, pending, gate))  # type: ignore[arg-type]
    assert not scan.ready(0.05)
    gate.set()
    assert scan.join(5), "the stream was not sent"
    assert received == [b"a", b"b"]
    assert not scan.ready(0.05), "ready before the scanner decided"
    pending.decided.set()
    assert scan.ready(1)
    assert scan.result() == ScanResult.found("Eicar")
    scan.close()
    assert pending.closed == 1


def test_what_the_stream_raised_is_raised_by_result() -> None:
    def start(watch: Watch) -> Settled:
        raise ScannerUnavailable("clamd: cannot connect")

    scan = BackgroundScan(start)
    assert scan.ready(1)
    with pytest.raises(ScannerUnavailable, match="cannot connect"):
        scan.result()
    assert scan.join(1)


def test_close_stops_the_stream_before_its_next_chunk() -> None:
    received: list[bytes] = []
    pending = Pending(ScanResult.ok())
    gate = threading.Event()
    scan = BackgroundScan(streaming([b"x"] * 100, received, pending, gate))  # type: ignore[arg-type]
    scan.close()
    gate.set()
    assert scan.join(2), "the stream's thread still runs after close()"
    assert received == []
    assert pending.closed == 0  # start() never returned it
    with pytest.raises(ScanDropped):
        scan.result()


def test_a_verdict_that_comes_after_close_is_dropped() -> None:
    # close() while the thread is still in start(): the pending it returns is closed there.
    received: list[bytes] = []
    pending = Pending(ScanResult.ok())
    sent, release = threading.Event(), threading.Event()

    def start(watch: Watch) -> Pending:
        received.extend(watch([b"one chunk"]))
        sent.set()
        assert release.wait(5)
        return pending

    scan = BackgroundScan(start)
    assert sent.wait(5)
    scan.close()
    release.set()
    assert scan.join(2)
    assert received == [b"one chunk"]
    assert pending.closed == 1
    with pytest.raises(ScannerUnavailable, match="dropped"):
        scan.result()
