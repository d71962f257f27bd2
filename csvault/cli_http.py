"""The HTTP side of ``csvault``: requests, the multipart upload, Server-Sent Events, and
every error answer turned into one line. Standard library only.

This module imports nothing from the other ``csvault.cli*`` modules (they import it).
"""

from __future__ import annotations

import http.client
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode, urlsplit

from csvault import cli_progress

CHUNK = 1 << 20


class CliError(Exception):
    """A problem to print (one line) and exit with status 2."""


class Unreachable(CliError):
    """The server cannot be reached at all: no point in trying the next file."""


def reason(exc: BaseException) -> str:
    """``Connection refused`` rather than ``[Errno 111] Connection refused``."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text)


def one_line(text: str) -> str:
    return " ".join(text.split())


def _field_errors(detail: Any, prefix: str = "") -> list[str]:
    """DRF's ``{"field": ["message", ...], "nested": {...}}`` as ``field: message`` items."""
    if isinstance(detail, dict):
        out: list[str] = []
        for key, value in detail.items():
            name = str(key) if key != "non_field_errors" else ""
            out += _field_errors(value, f"{prefix}.{name}" if prefix and name else prefix or name)
        return out
    if isinstance(detail, list) and all(not isinstance(v, dict | list) for v in detail):
        text = " ".join(str(v) for v in detail)
        return [f"{prefix}: {text}" if prefix else text]
    if isinstance(detail, list):
        out = []
        for index, value in enumerate(detail):
            out += _field_errors(value, f"{prefix}[{index}]")
        return out
    return [f"{prefix}: {detail}" if prefix else str(detail)]


def error_text(status: int, raw: bytes, retry_after: str | None = None) -> str:
    """An error answer as one line: ``HTTP 400 invalid: The request is invalid. limit: ...``.

    The API's body is ``{"error": {"code", "message", "fields"?}}``; a bare DRF body
    (``{"detail": ...}`` or ``{"field": [...]}``) and a proxy's HTML page are read too.
    """
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    code, message, fields = "", "", None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or "")
            message = str(error.get("message") or "")
            fields = error.get("fields")
        elif "detail" in body:
            message = str(body["detail"])
        else:
            fields = body
    if not message and not fields:
        message = raw[:200].decode(errors="replace") or http.client.responses.get(status, "")
    text = f"HTTP {status}" + (f" {code}" if code else "") + ":"
    if message:
        text += f" {message}"
    if fields:
        text += " " + "; ".join(_field_errors(fields))
    if retry_after:
        text += f" (retry after {retry_after} s)"
    return one_line(text)


def decode(response: http.client.HTTPResponse) -> Any:
    """The JSON body of a 2xx answer; :class:`CliError` with the server's reason otherwise."""
    try:
        raw = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise CliError(f"the server's answer was cut short: {reason(exc)}") from None
    if response.status >= 400:
        raise CliError(error_text(response.status, raw, response.getheader("Retry-After")))
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise CliError(f"HTTP {response.status}: the answer is not JSON") from None


class Client:
    def __init__(self, url: str, token: str | None, timeout: float = 60.0) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CliError(f"--url must be http(s)://host[:port], not {url!r}")
        self.scheme, self.netloc, self.base = parts.scheme, parts.netloc, parts.path
        self.url = f"{self.scheme}://{self.netloc}{self.base}"
        self.token = token
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.netloc, timeout=self.timeout)

    def unreachable(self, exc: BaseException) -> Unreachable:
        return Unreachable(f"cannot reach {self.url}: {reason(exc)}")

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "csvault-cli/1"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        return {**headers, **(extra or {})}

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        conn = self._connection()
        try:
            conn.request(method, self.base + path, body=body, headers=self.headers(headers))
            return conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise self.unreachable(exc) from None

    def json(self, method: str, path: str, form: dict[str, str] | None = None, **query: Any) -> Any:
        """``query``'s items that are not None go in the query string."""
        params = {k: v for k, v in query.items() if v is not None}
        if params:
            path += ("&" if "?" in path else "?") + urlencode(params)
        body = urlencode(form).encode() if form is not None else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if form else None
        return decode(self.request(method, path, body, headers))

    def pages(self, path: str, **query: Any) -> Iterator[dict[str, Any]]:
        """The ``results`` of a cursor-paginated list, following its ``next`` links.

        Only the link's query (the cursor and the filters) is used: the host and path
        it names may be the server's inner ones behind a proxy.
        """
        body = self.json("GET", path, **query)
        while True:
            yield from body["results"]
            if not body.get("next"):
                return
            body = self.json("GET", f"{path}?{urlsplit(body['next']).query}")

    def upload(self, path: Path, fields: dict[str, str], progress: bool) -> Any:
        """POST the file as multipart, streamed from disk with a precomputed length."""
        boundary = uuid.uuid4().hex
        head = b"".join(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            ).encode()
            for name, value in fields.items()
        )
        filename = path.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        head += (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = path.stat().st_size
        conn = self._connection()
        try:
            conn.connect()
        except OSError as exc:
            raise self.unreachable(exc) from None
        bar = cli_progress.Bar(path.name, size, enabled=progress)
        try:
            conn.putrequest("POST", self.base + "/api/datasets/")
            headers = self.headers(
                {
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                    "Content-Length": str(len(head) + size + len(tail)),
                }
            )
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            conn.send(head)
            bar.update(0)
            with path.open("rb") as fh:
                for sent in _send_file(conn, fh):
                    bar.update(sent)
            conn.send(tail)
            bar.close()
            return decode(conn.getresponse())
        except (BrokenPipeError, ConnectionResetError):
            # The server answered early (413, 429...) and closed: read that answer.
            bar.line.close()
            try:
                return decode(conn.getresponse())
            except (OSError, http.client.HTTPException):
                raise CliError("the server closed the connection during the upload") from None
        except (OSError, http.client.HTTPException) as exc:
            bar.line.close()
            raise CliError(f"upload failed: {reason(exc)}") from None
        finally:
            conn.close()

    def events(self, dataset_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Server-Sent Events of a dataset, reconnecting until an ``end`` event."""
        while True:
            response = self.request(
                "GET",
                f"/api/datasets/{dataset_id}/events/",
                headers={"Accept": "text/event-stream"},
            )
            if response.status != 200:
                decode(response)  # raises with the server's message
            name, data = "", ""
            try:
                for raw in response:
                    line = raw.decode().rstrip("\r\n")
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif not line and name:
                        event = (name, json.loads(data))
                        yield event
                        if name in ("end", "error"):
                            return
                        name, data = "", ""
            except (OSError, http.client.HTTPException):
                time.sleep(1)  # a dropped stream: open it again, as EventSource does


def _send_file(conn: http.client.HTTPConnection, fh: BinaryIO) -> Iterator[int]:
    sent = 0
    while chunk := fh.read(CHUNK):
        conn.send(chunk)
        sent += len(chunk)
        yield sent


def write_all(stream: BinaryIO, data: bytes) -> None:
    """All of ``data``: a buffered write into a pipe whose reader leaves mid-write returns
    the part that went through and raises nothing, so the rest is written again (and
    that raises ``BrokenPipeError``)."""
    view = memoryview(data)
    while view:
        view = view[stream.write(view) :]


def write_out(data: bytes) -> None:
    """Bytes to stdout, flushed (a closed pipe raises here, inside ``main``)."""
    sys.stdout.flush()
    write_all(sys.stdout.buffer, data)
    sys.stdout.buffer.flush()


def write_text(text: str) -> None:
    """Text to stdout in its encoding (what it cannot show, replaced), as :func:`write_out`."""
    write_out(text.encode(sys.stdout.encoding or "utf-8", errors="replace"))
