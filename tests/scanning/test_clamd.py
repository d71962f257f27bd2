"""The clamd client against a real clamd, plus URL parsing and protocol failures.

clamd comes from ``CSVAULT_TEST_CLAMD_URL`` when set (CI starts one with
``scripts/clamd.sh start``); otherwise these tests start their own with that script on a
free port. Without a clamd binary they are skipped, except under ``CI`` where that fails.
The size-limit tests always start a second clamd with tiny limits of their own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from csvault.scanning.base import SIZE_LIMIT_SIGNATURE, ScannerUnavailable
from csvault.scanning.clamd import INSTREAM_CHUNK, ClamdAddress, ClamdScanner
from tests.helpers import Clamd, VerdictHold, free_port, wait_until
from tests.scanning.samples import chunked, clean_csv, csv_with_cell, eicar

# --- against a real clamd ----------------------------------------------------------------


def test_it_answers_ping(clamd: Clamd) -> None:
    ClamdScanner(clamd.url).ping()


@pytest.mark.parametrize("chunk_size", [1, 7, 4096, 65536, 200_000])
def test_it_finds_eicar_inside_one_csv_cell(clamd: Clamd, chunk_size: int) -> None:
    data = csv_with_cell(eicar(), start=65536 - 30)

    result = ClamdScanner(clamd.url).scan(chunked(data, chunk_size))

    assert result.clean is False
    assert result.signature is not None
    # clamd appends ".UNOFFICIAL" to names from a database it did not sign; a clamd with
    # the official database calls it Win.Test.EICAR_HDB-1.
    assert "EICAR" in result.signature.upper()


def test_it_passes_a_clean_csv(clamd: Clamd) -> None:
    result = ClamdScanner(clamd.url).scan(chunked(clean_csv(5 * 1024 * 1024), 65536))

    assert result.clean is True
    assert result.signature is None


def test_it_passes_an_empty_file(clamd: Clamd) -> None:
    assert ClamdScanner(clamd.url).scan([]).clean is True


def test_it_lets_errors_from_the_file_stream_through(clamd: Clamd) -> None:
    def broken_storage() -> Iterator[bytes]:
        yield b"id,name\n"
        raise OSError("storage went away")

    with pytest.raises(OSError, match="storage went away"):
        ClamdScanner(clamd.url).scan(broken_storage())
    # The aborted stream left clamd serving.
    ClamdScanner(clamd.url).ping()


def test_it_rejects_a_file_over_the_stream_limit(small_clamd: Clamd) -> None:
    data = clean_csv(3 * 1024 * 1024)

    result = ClamdScanner(small_clamd.url).scan(chunked(data, 65536))

    assert result.clean is False
    assert result.signature == SIZE_LIMIT_SIGNATURE
    assert result.exceeds_limits


def test_it_stops_sending_once_clamd_refuses_the_stream(small_clamd: Clamd) -> None:
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        while sent < 1024 * 1024 * 1024:
            sent += INSTREAM_CHUNK
            yield b"x" * INSTREAM_CHUNK

    result = ClamdScanner(small_clamd.url).scan(endless())

    assert result.signature == SIZE_LIMIT_SIGNATURE
    assert sent < 64 * 1024 * 1024


def test_it_rejects_a_file_over_the_file_size_limit(small_clamd: Clamd) -> None:
    # Within StreamMaxLength (2 MiB) but over MaxFileSize (1 MiB): clamd's own finding.
    data = clean_csv(1536 * 1024)

    result = ClamdScanner(small_clamd.url).scan(chunked(data, 65536))

    assert result.clean is False
    assert result.signature == "Heuristics.Limits.Exceeded.MaxFileSize"
    assert result.exceeds_limits


def test_it_scans_over_a_unix_socket(small_clamd: Clamd) -> None:
    if small_clamd.unix_url is None:
        pytest.skip("clamd.sh started clamd without a unix socket (directory path too long)")
    scanner = ClamdScanner(small_clamd.unix_url)

    scanner.ping()
    assert "EICAR" in (scanner.scan([b"a,b\n1,", eicar(), b"\n"]).signature or "").upper()
    assert scanner.scan([b"a,b\n1,2\n"]).clean is True


# --- unreachable and misbehaving servers -----------------------------------------------


def test_it_reports_an_unreachable_clamd_as_unavailable() -> None:
    scanner = ClamdScanner(f"tcp://127.0.0.1:{free_port()}")

    with pytest.raises(ScannerUnavailable, match="cannot connect"):
        scanner.scan([b"a,b\n"])
    with pytest.raises(ScannerUnavailable, match="ping failed"):
        scanner.ping()


def test_it_reports_a_missing_unix_socket_as_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ScannerUnavailable):
        ClamdScanner(f"unix://{tmp_path}/absent.sock").scan([b"a\n"])


class FakeClamd:
    """A one-connection-at-a-time TCP server that answers with ``reply(request_bytes)``.

    For protocol failures a real clamd does not produce on demand.
    """

    def __init__(self, reply: Callable[[socket.socket], None]) -> None:
        self.reply = reply
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.server.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                self.reply(conn)

    def close(self) -> None:
        self.server.close()


def read_stream(conn: socket.socket) -> bytes:
    """Read an INSTREAM request to its zero-length terminator; return the payload."""
    buffer = b""
    while not buffer.endswith(b"\0\0\0\0") or len(buffer) < 14:
        data = conn.recv(65536)
        if not data:
            break
        buffer += data
    return buffer


Behaviour = Callable[[socket.socket], None]
MakeFake = Callable[[Behaviour], FakeClamd]


@pytest.fixture
def fake_clamd() -> Iterator[MakeFake]:
    servers: list[FakeClamd] = []

    def make(reply: Behaviour) -> FakeClamd:
        servers.append(FakeClamd(reply))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


SECRET_CELL = b"top-secret-cell-value"


def echo(conn: socket.socket) -> None:
    conn.sendall(read_stream(conn))


def http_error(conn: socket.socket) -> None:
    read_stream(conn)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def hang_up(conn: socket.socket) -> None:
    read_stream(conn)


def clamd_error(conn: socket.socket) -> None:
    read_stream(conn)
    conn.sendall(b"stream: Can't allocate memory ERROR\0")


def endless_reply(conn: socket.socket) -> None:
    read_stream(conn)
    conn.sendall(b"x" * 100_000)


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        (echo, "unexpected reply"),
        (http_error, "unexpected reply"),
        (hang_up, "without an answer"),
        (clamd_error, "clamd error: stream: Can't allocate memory ERROR"),
        (endless_reply, "longer than"),
    ],
    ids=["echo", "http", "hang-up", "clamd-error", "endless-reply"],
)
def test_it_never_takes_an_odd_answer_for_a_verdict(
    fake_clamd: MakeFake,
    behaviour: Behaviour,
    message: str,
) -> None:
    server = fake_clamd(behaviour)
    data = b"id,secret\n1," + SECRET_CELL + b"\n" + b"2,padding\n" * 20000

    with pytest.raises(ScannerUnavailable, match=message) as caught:
        ClamdScanner(server.url, timeout=5).scan(chunked(data, 4096))

    assert SECRET_CELL.decode() not in str(caught.value)


def test_it_never_takes_an_ok_before_the_end_of_the_stream_for_clean(
    fake_clamd: MakeFake,
) -> None:
    def ok_too_early(conn: socket.socket) -> None:
        conn.recv(10)
        conn.sendall(b"stream: OK\0")
        # Stop reading for a moment: the client fills the socket buffers, and when it
        # can send again it notices the answer before its next chunk.
        time.sleep(0.2)
        read_stream(conn)

    server = fake_clamd(ok_too_early)
    block = b"1,harmless\n" * 6000
    # Far more than loopback socket buffers hold, so sending cannot finish first.
    chunks = (block for _ in range(64 * 1024 * 1024 // len(block)))

    with pytest.raises(ScannerUnavailable, match="OK before the end of the stream"):
        ClamdScanner(server.url, timeout=5).scan(chunks)


def test_it_gives_up_on_a_silent_clamd_after_the_timeout(
    fake_clamd: MakeFake,
) -> None:
    release = threading.Event()

    def silent(conn: socket.socket) -> None:
        read_stream(conn)
        release.wait(10)

    server = fake_clamd(silent)
    try:
        with pytest.raises(ScannerUnavailable, match="timed out"):
            ClamdScanner(server.url, timeout=0.3).scan([b"a,b\n"])
    finally:
        release.set()


def test_it_fails_ping_on_a_wrong_answer(
    fake_clamd: MakeFake,
) -> None:
    def not_pong(conn: socket.socket) -> None:
        conn.recv(16)
        conn.sendall(b"UNKNOWN COMMAND\0")

    with pytest.raises(ScannerUnavailable, match="unexpected"):
        ClamdScanner(fake_clamd(not_pong).url).ping()


def test_it_sends_instream_chunks_no_larger_than_64_kib(
    fake_clamd: MakeFake,
) -> None:
    lengths: list[int] = []

    def record(conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        assert reader.read(10) == b"zINSTREAM\0"
        while length := int.from_bytes(reader.read(4), "big"):
            lengths.append(length)
            reader.read(length)
        conn.sendall(b"stream: OK\0")

    server = fake_clamd(record)
    data = b"z" * (3 * INSTREAM_CHUNK + 5)

    result = ClamdScanner(server.url).scan([data[:10], data[10:200_000], data[200_000:]])

    assert result.clean is True
    assert lengths == [INSTREAM_CHUNK] * 3 + [5]


# --- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://127.0.0.1:3310", ClamdAddress(host="127.0.0.1", port=3310)),
        ("tcp://clamd.internal", ClamdAddress(host="clamd.internal", port=3310)),
        ("tcp://[::1]:3311/", ClamdAddress(host="::1", port=3311)),
        ("unix:///run/clamav/clamd.ctl", ClamdAddress(path="/run/clamav/clamd.ctl")),
        ("  unix:///tmp/with%20space.sock ", ClamdAddress(path="/tmp/with space.sock")),
    ],
)
def test_it_parses_clamd_urls(url: str, expected: ClamdAddress) -> None:
    assert ClamdAddress.from_url(url) == expected
    assert ClamdScanner(url).address == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "127.0.0.1:3310",
        "http://127.0.0.1:3310",
        "tcp://",
        "tcp://host:0",
        "tcp://host:70000",
        "tcp://host:port",
        "tcp://host:3310/path",
        "tcp://user:pw@host:3310",
        "tcp://host:3310?x=1",
        "unix://",
        "unix://relative/clamd.sock",
        "unix:relative.sock",
        "unix:///",
    ],
)
def test_it_refuses_malformed_clamd_urls(url: str) -> None:
    with pytest.raises(ValueError, match="CLAMD_URL"):
        ClamdAddress.from_url(url)


def test_it_refuses_a_non_positive_timeout() -> None:
    with pytest.raises(ValueError, match="timeout"):
        ClamdScanner("tcp://127.0.0.1:3310", timeout=0)


# --- the verdict after the stream (start) --------------------------------------------------


def test_start_returns_before_the_verdict_and_result_waits_for_it(clamd: Clamd) -> None:
    hold = VerdictHold(clamd.url)
    try:
        pending = ClamdScanner(hold.url).start(chunked(csv_with_cell(eicar(), start=5000), 4096))
        wait_until(lambda: hold.held == 1, what="clamd's answer held")
        assert pending.ready(0) is False
        assert pending.ready(0.2) is False
        hold.release()
        assert pending.ready(5) is True
        assert pending.result().clean is False
        assert pending.result().clean is False  # the same verdict, read once
        pending.close()
    finally:
        hold.release()
        hold.close()


def test_a_verdict_that_never_comes_is_no_verdict_after_the_timeout(clamd: Clamd) -> None:
    hold = VerdictHold(clamd.url)
    try:
        pending = ClamdScanner(hold.url, timeout=0.5).start([clean_csv(1000)])
        started = time.monotonic()
        while not pending.ready(10):
            pass
        assert time.monotonic() - started < 2
        with pytest.raises(ScannerUnavailable, match="timed out"):
            pending.result()
    finally:
        hold.release()
        hold.close()
