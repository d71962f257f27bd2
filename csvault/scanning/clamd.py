"""A small clamd client: INSTREAM scans and PING over TCP or a unix socket.

Protocol (clamd(8)): send ``zINSTREAM\\0``, then chunks each prefixed by their length as a
4-byte big-endian integer, then a zero length. clamd answers one NUL-terminated line:

- ``stream: OK`` - clean, the only answer that makes a file clean;
- ``stream: NAME FOUND`` - a finding, including ``Heuristics.Limits.Exceeded.*`` for files
  over MaxFileSize/MaxScanSize/MaxScanTime when clamd runs with ``AlertExceedsMax yes``;
- ``INSTREAM size limit exceeded. ERROR`` - the stream passed ``StreamMaxLength``. clamd
  answers as soon as the limit is crossed and closes the connection. The file can never be
  scanned, so retrying is pointless: it is reported as the finding
  :data:`~csvault.scanning.base.SIZE_LIMIT_SIGNATURE` and the caller rejects it;
- any other ``... ERROR``, an unexpected answer, a timeout or a dropped connection raise
  :class:`~csvault.scanning.base.ScannerUnavailable` (retry later, never ingest).
"""

from __future__ import annotations

import math
import re
import select
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from csvault.scanning.base import SIZE_LIMIT_SIGNATURE, ScannerUnavailable, ScanResult
from csvault.scanning.chunks import rechunk

__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_PORT",
    "INSTREAM_CHUNK",
    "ClamdAddress",
    "ClamdScanner",
    "ClamdVerdict",
]

DEFAULT_PORT = 3310
CONNECT_TIMEOUT = 5.0
#: Largest INSTREAM chunk sent; input chunks of any size are cut or joined to this.
INSTREAM_CHUNK = 64 * 1024
# clamd's answers are short lines; anything longer is not clamd talking.
_MAX_REPLY = 4096
_FOUND = re.compile(r"stream: (?P<name>\S(?:.*\S)?) FOUND")
_SIZE_LIMIT = "size limit exceeded"


@dataclass(frozen=True)
class ClamdAddress:
    """Where clamd listens: ``host``/``port`` for TCP, or ``path`` for a unix socket."""

    host: str | None = None
    port: int | None = None
    path: str | None = None

    @classmethod
    def from_url(cls, url: str) -> ClamdAddress:
        """Parse ``tcp://host[:port]`` (port 3310 by default) or ``unix:///abs/path``.

        Raises ValueError, naming the problem, for anything else.
        """
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"CLAMD_URL {url!r} is not a valid URL: {exc}") from None
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(
                f"CLAMD_URL {url!r}: credentials, query and fragment are not supported"
            )
        if parts.scheme == "tcp":
            if not parts.hostname or parts.path not in ("", "/"):
                raise ValueError(f"CLAMD_URL {url!r}: expected tcp://host:port")
            if port == 0:
                raise ValueError(f"CLAMD_URL {url!r}: port must be 1-65535")
            return cls(host=parts.hostname, port=port or DEFAULT_PORT)
        if parts.scheme == "unix":
            path = unquote(parts.path)
            if parts.netloc or not path.startswith("/") or path == "/":
                raise ValueError(f"CLAMD_URL {url!r}: expected unix:///absolute/path/to/clamd.sock")
            return cls(path=path)
        raise ValueError(
            f"CLAMD_URL {url!r}: scheme must be tcp:// or unix://, not {parts.scheme!r}"
        )

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix://{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


class ClamdScanner:
    """Scans streams with a running clamd (the production scanner).

    ``timeout`` bounds every socket operation after connecting, including the wait for the
    verdict after the last chunk, so it must exceed clamd's ``MaxScanTime`` for the largest
    accepted file (else clamd's "too slow" finding never arrives and the scan is retried).
    Connecting has its own :data:`CONNECT_TIMEOUT`. Each scan uses a new connection, so one
    instance may be shared between threads.
    """

    name = "clamd"
    minimal = False
    decides_elsewhere = True

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.address = ClamdAddress.from_url(url)
        self.timeout = timeout
        self.description = f"clamd at {self.address}"

    def __repr__(self) -> str:
        return f"ClamdScanner({str(self.address)!r}, timeout={self.timeout})"

    def ping(self) -> None:
        """Raise ScannerUnavailable unless clamd answers ``zPING`` with ``PONG``."""
        try:
            with self._connect() as sock:
                sock.sendall(b"zPING\0")
                reply = _read_reply(sock)
        except (OSError, _BadReply) as exc:
            raise ScannerUnavailable(f"{self.address}: ping failed: {_describe(exc)}") from exc
        if reply != "PONG":
            raise ScannerUnavailable(
                f"{self.address}: ping answered {len(reply)} unexpected characters"
            )

    def scan(self, chunks: Iterable[bytes]) -> ScanResult:
        """Stream ``chunks`` to clamd with INSTREAM and return its verdict.

        Stops sending early if clamd answers mid-stream (its stream size limit). Errors
        raised while reading ``chunks`` propagate unchanged; socket and protocol trouble
        raise ScannerUnavailable.
        """
        pending = self.start(chunks)
        try:
            return pending.result()
        finally:
            pending.close()

    def start(self, chunks: Iterable[bytes]) -> ClamdVerdict:
        """Stream ``chunks`` to clamd, as :meth:`scan` does, and return before the verdict:
        clamd scans what it received after the end of the stream, in its own process."""
        try:
            sock = self._connect()
        except OSError as exc:
            raise ScannerUnavailable(f"{self.address}: cannot connect: {_describe(exc)}") from exc
        try:
            # clamd answers before the terminator only to refuse the stream; poll() (not
            # select(), which fails on descriptors past 1024) notices that without blocking.
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            send_error = _send(sock, b"zINSTREAM\0")
            complete = False
            pieces = rechunk(chunks, INSTREAM_CHUNK)
            while send_error is None:
                # Outside any handler: the caller's own read errors are not scanner errors.
                piece = next(pieces, None)
                if piece is None:
                    send_error = _send(sock, b"\0\0\0\0")
                    complete = send_error is None
                    break
                if poller.poll(0):
                    break
                send_error = _send(sock, struct.pack(">I", len(piece)) + piece)
            if isinstance(send_error, TimeoutError):
                raise ScannerUnavailable(f"{self.address}: scan failed: timed out")
        except BaseException:
            sock.close()
            raise
        # After a failed send, clamd's answer may still be waiting to be read (it
        # closes a refused stream), and that answer decides what happened.
        return ClamdVerdict(self, sock, poller, complete=complete, send_error=send_error)

    def _connect(self) -> socket.socket:
        address = self.address
        if address.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(CONNECT_TIMEOUT)
                sock.connect(address.path)
            except OSError:
                sock.close()
                raise
        else:
            assert address.host is not None
            assert address.port is not None
            sock = socket.create_connection((address.host, address.port), CONNECT_TIMEOUT)
        sock.settimeout(self.timeout)
        return sock


class ClamdVerdict:
    """clamd's verdict on a stream it has read (:meth:`ClamdScanner.start`).

    The wait for it is bounded by the scanner's ``timeout``, counted from the end of the
    stream.
    """

    def __init__(
        self,
        scanner: ClamdScanner,
        sock: socket.socket,
        poller: select.poll,
        *,
        complete: bool,
        send_error: OSError | None,
    ) -> None:
        self._address = scanner.address
        self._sock = sock
        self._poller = poller
        self._complete = complete
        self._send_error = send_error
        self._deadline = time.monotonic() + scanner.timeout
        self._verdict: ScanResult | ScannerUnavailable | None = None

    def ready(self, timeout: float) -> bool:
        if self._verdict is not None or self._send_error is not None:
            return True
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            return True  # result() finds out at once that nothing came
        return bool(self._poller.poll(math.ceil(min(timeout, remaining) * 1000)))

    def result(self) -> ScanResult:
        if self._verdict is None:
            try:
                self._verdict = self._read()
            except ScannerUnavailable as exc:
                self._verdict = exc
            finally:
                self.close()
        if isinstance(self._verdict, ScannerUnavailable):
            raise self._verdict
        return self._verdict

    def close(self) -> None:
        self._sock.close()

    def _read(self) -> ScanResult:
        address = self._address
        try:
            self._sock.settimeout(max(0.001, self._deadline - time.monotonic()))
            reply = _read_reply(self._sock)
        except (OSError, _BadReply) as exc:
            cause = self._send_error or exc
            raise ScannerUnavailable(f"{address}: scan failed: {_describe(cause)}") from cause
        if reply == "stream: OK":
            if self._complete:
                return ScanResult.ok()
            # "clean" before clamd saw the whole file would be a lie: no verdict.
            raise ScannerUnavailable(f"{address}: answered OK before the end of the stream")
        match = _FOUND.fullmatch(reply)
        if match:
            return ScanResult.found(match["name"])
        if reply.endswith("ERROR"):
            if _SIZE_LIMIT in reply:
                return ScanResult.found(SIZE_LIMIT_SIGNATURE)
            raise ScannerUnavailable(f"{address}: clamd error: {_printable(reply)}")
        # Never quote an unknown reply: a peer that is not clamd may echo file content.
        raise ScannerUnavailable(f"{address}: unexpected reply ({len(reply)} characters)")


class _BadReply(Exception):
    """clamd's answer was not a short NUL-terminated line."""


def _send(sock: socket.socket, data: bytes) -> OSError | None:
    try:
        sock.sendall(data)
    except OSError as exc:
        return exc
    return None


def _read_reply(sock: socket.socket) -> str:
    """Read one NUL-terminated answer (or up to EOF, as clamd may close right after)."""
    reply = bytearray()
    while True:
        data = sock.recv(_MAX_REPLY)
        if not data:
            break
        reply += data
        if b"\0" in reply:
            reply = reply[: reply.index(b"\0")]
            break
        if len(reply) > _MAX_REPLY:
            raise _BadReply(f"answer longer than {_MAX_REPLY} bytes")
    if not reply:
        raise _BadReply("connection closed without an answer")
    return reply.decode("utf-8", "replace").strip()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:200]
