"""A scan whose stream is sent from a thread, so that the caller works while it goes.

:class:`BackgroundScan` runs ``start(watch)`` in a daemon thread: ``start`` streams a file
to the scanner, passing its chunks through ``watch``, and returns the scanner's
:class:`~csvault.scanning.base.PendingScan`. The object is itself a pending scan: not
ready until the stream is sent and the scanner decided; :meth:`BackgroundScan.result`
raises what ``start`` raised. :meth:`BackgroundScan.close` stops the stream before its
next chunk (the scanner never sees its end, so no verdict comes of it) and drops the
verdict. The thread touches no database connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator

from csvault.scanning.base import PendingScan, ScannerUnavailable, ScanResult

__all__ = ["BackgroundScan", "ScanDropped", "Watch"]

Watch = Callable[[Iterable[bytes]], Iterator[bytes]]


class ScanDropped(Exception):
    """The stream was stopped: the scan was closed before it was sent."""


class BackgroundScan:
    def __init__(self, start: Callable[[Watch], PendingScan]) -> None:
        self._lock = threading.Lock()
        self._sent = threading.Event()
        self._pending: PendingScan | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, args=(start,), name="scan-stream", daemon=True
        )
        self._thread.start()

    def ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if not self._sent.wait(timeout):
            return False
        pending = self._pending
        if pending is None:
            return True  # result() raises at once
        return pending.ready(max(0.0, deadline - time.monotonic()))

    def result(self) -> ScanResult:
        self._sent.wait()
        if self._error is not None:
            raise self._error
        pending = self._pending
        if pending is None:
            raise ScannerUnavailable("the scan was dropped before its verdict")
        return pending.result()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, None
        if pending is not None:
            pending.close()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the stream's thread to end; True once it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _watch(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if self._closed:
                raise ScanDropped("the scan was closed while its stream was sent")
            yield chunk

    def _run(self, start: Callable[[Watch], PendingScan]) -> None:
        try:
            pending = start(self._watch)
        except BaseException as exc:  # handed to result()
            self._error = exc
            self._sent.set()
            return
        with self._lock:
            dropped = self._closed
            if not dropped:
                self._pending = pending
        if dropped:
            pending.close()
        self._sent.set()
