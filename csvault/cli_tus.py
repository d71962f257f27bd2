"""Resumable uploads (tus 1.0, ``/api/uploads/``) for ``csvault upload``: standard library only.

The file goes in chunks (8 MiB, each with an ``Upload-Checksum: sha1``, so a chunk cut
short is not kept half). A dropped connection, a 5xx, a 429 or an offset conflict is
retried with backoff from the offset the server reports (``HEAD``). The upload's URL is
kept in a state file until the last byte is in, keyed by the server, the file's absolute
path, size and mtime and the upload options: running the same command again resumes
where the server stands. The state file is ``$CSVAULT_UPLOAD_STATE``, else
``$XDG_STATE_HOME/csvault/uploads.json``, else ``~/.local/state/csvault/uploads.json``.

This module imports nothing from csvault.cli (which imports it); its progress bar is
csvault.cli_progress's, its error lines csvault.cli_http's.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from csvault.cli_http import Unreachable, error_text, reason
from csvault.cli_progress import Bar

TUS_VERSION = "1.0.0"
#: Files from this size up go resumable unless ``--no-tus``.
THRESHOLD = 8 << 20
CHUNK_SIZE = 8 << 20
#: A chunk is handed to the socket in pieces this big, the progress bar moving between.
PIECE = 1 << 20
#: Failed attempts in a row (without progress) before giving up; waits 1, 2, 4... 30 s.
RETRIES = 6
MAX_WAIT = 30.0
#: Test hook: behave as if interrupted (Ctrl-C) after this many chunks.
STOP_ENV = "CSVAULT_TUS_STOP_AFTER_CHUNKS"
STATE_ENV = "CSVAULT_UPLOAD_STATE"


class TusFailed(Exception):
    """The upload cannot go on (an error answer, or too many failed attempts)."""


class _Gone(Exception):
    """The upload is not on the server (any more): 404 or 410."""


class _Retry(Exception):
    """A failed attempt worth repeating after ``wait`` seconds (None: the backoff)."""

    def __init__(self, why: str, wait: float | None = None) -> None:
        super().__init__(why)
        self.wait = wait


def state_path() -> Path:
    if explicit := os.environ.get(STATE_ENV):
        return Path(explicit)
    home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(home) / "csvault" / "uploads.json"


class State:
    """Upload URLs not finished yet, in a JSON file (written whole, atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict[str, dict[str, Any]]) -> None:
        now = time.time()
        data = {k: v for k, v in data.items() if v.get("expires", now + 1) > now}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            temporary.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(temporary, self.path)
        except OSError as exc:  # resuming is a convenience: say so, go on
            print(f"csvault: cannot write {self.path}: {exc}", file=sys.stderr)

    def get(self, key: str) -> str | None:
        url = self._load().get(key, {}).get("url")
        return url if isinstance(url, str) else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        data = self._load()
        data[key] = entry
        self._save(data)

    def remove(self, key: str) -> None:
        data = self._load()
        if data.pop(key, None) is not None:
            self._save(data)


def _error(status: int, body: bytes) -> str:
    return error_text(status, body)


def _retry_after(response: http.client.HTTPResponse) -> float | None:
    value = response.getheader("Retry-After", "")
    return float(value) if value.isdigit() else None


class TusUpload:
    """One file to one server: ``run()`` returns the dataset id once the last byte is in."""

    def __init__(
        self,
        server: str,
        headers: dict[str, str],
        path: Path,
        metadata: dict[str, str],
        *,
        progress: bool,
        timeout: float = 60.0,
    ) -> None:
        self.server = server.rstrip("/")
        self.headers = {**headers, "Tus-Resumable": TUS_VERSION}
        self.path = path.resolve()
        self.metadata = metadata
        self.progress = progress
        self.timeout = timeout
        stat = self.path.stat()
        self.size = stat.st_size
        self.key = hashlib.sha256(
            json.dumps(
                [self.server, str(self.path), self.size, stat.st_mtime_ns, sorted(metadata.items())]
            ).encode()
        ).hexdigest()
        self.state = State(state_path())
        stop = os.environ.get(STOP_ENV, "")
        self.stop_after = int(stop) if stop.isdigit() else None

    # -- HTTP -------------------------------------------------------------------------

    def _open(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return cls(parts.netloc, timeout=self.timeout), path

    def _call(
        self, method: str, url: str, headers: dict[str, str]
    ) -> tuple[http.client.HTTPResponse, bytes]:
        conn, path = self._open(url)
        try:
            conn.request(method, path, headers={**self.headers, **headers})
            response = conn.getresponse()
            return response, response.read()
        finally:
            conn.close()

    @staticmethod
    def _check(response: http.client.HTTPResponse, body: bytes, expected: int) -> None:
        status = response.status
        if status == expected:
            return
        if status in (404, 410):
            raise _Gone(_error(status, body))
        if status >= 500 or status in (409, 423, 429, 460):
            raise _Retry(_error(status, body), _retry_after(response))
        raise TusFailed(_error(status, body))

    def _create(self) -> str:
        encoded = ",".join(
            f"{key} {base64.b64encode(value.encode()).decode()}"
            for key, value in self.metadata.items()
        )
        created = f"{self.server}/api/uploads/"
        response, body = self._call(
            "POST", created, {"Upload-Length": str(self.size), "Upload-Metadata": encoded}
        )
        self._check(response, body, 201)
        location = response.getheader("Location")
        if not location:
            raise TusFailed("the server created the upload but sent no Location")
        # Chunks (and the token) go to the server we were given, whatever origin the
        # Location names (a proxy may make it http:// or an inner host name).
        named = urlsplit(urljoin(created, location))
        url = urlunsplit(urlsplit(created)._replace(path=named.path, query=named.query))
        entry: dict[str, Any] = {"url": url, "file": str(self.path), "size": self.size}
        if expires := response.getheader("Upload-Expires"):
            with contextlib.suppress(TypeError, ValueError):
                entry["expires"] = parsedate_to_datetime(expires).timestamp()
        self.state.put(self.key, entry)
        return url

    def _offset(self, url: str) -> int:
        response, body = self._call("HEAD", url, {})
        self._check(response, body, 200)
        if response.getheader("Upload-Length") != str(self.size):
            raise _Gone(f"the upload is {response.getheader('Upload-Length')} bytes long")
        return int(response.getheader("Upload-Offset") or 0)

    def _patch(self, url: str, offset: int, chunk: bytes, bar: Bar) -> int:
        conn, path = self._open(url)
        digest = hashlib.sha1(chunk, usedforsecurity=False).digest()  # tus checksum, not security
        headers = {
            **self.headers,
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(len(chunk)),
            "Upload-Offset": str(offset),
            "Upload-Checksum": f"sha1 {base64.b64encode(digest).decode()}",
        }
        try:
            conn.putrequest("PATCH", path)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            view = memoryview(chunk)
            try:
                for start in range(0, len(chunk), PIECE):
                    conn.send(view[start : start + PIECE])
                    bar.update(offset + min(start + PIECE, len(chunk)))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may have answered early (409, 429...): read that answer
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        self._check(response, body, 204)
        return int(response.getheader("Upload-Offset") or offset)

    # -- the upload -------------------------------------------------------------------

    def run(self) -> str:
        url, offset = self.state.get(self.key), 0
        if url is not None:
            try:
                offset = self._offset(url)
            except _Gone:
                url = None
                print("the saved upload is gone from the server: starting over", file=sys.stderr)
            except (_Retry, OSError, http.client.HTTPException) as exc:
                raise TusFailed(f"cannot resume {url}: {exc}") from None
            else:
                print(
                    f"resuming at {offset} bytes ({offset * 100 / self.size:.1f}% already there)",
                    file=sys.stderr,
                )
        if url is None:
            try:
                url = self._create()
            except _Retry as exc:
                raise TusFailed(str(exc)) from None
            except _Gone as exc:
                raise TusFailed(f"{self.server} has no /api/uploads/: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                raise Unreachable(f"cannot reach {self.server}: {reason(exc)}") from None
        try:
            self._send(url, offset)
        except _Gone as exc:
            self.state.remove(self.key)
            raise TusFailed(
                f"the upload is gone from the server ({exc}); run again to start over"
            ) from None
        except KeyboardInterrupt:
            raise KeyboardInterrupt("interrupted: run the same command again to resume") from None
        self.state.remove(self.key)
        return url.rstrip("/").rsplit("/", 1)[1]

    def _send(self, url: str, offset: int) -> None:
        bar = Bar(f"{self.path.name} (resumable)", self.size, offset, enabled=self.progress)
        bar.update(offset, force=True)
        failures, chunks, resync = 0, 0, False
        with self.path.open("rb") as fh:
            while True:
                try:
                    if resync:
                        offset = self._offset(url)
                        resync = False
                    if offset >= self.size:
                        break
                    fh.seek(offset)
                    chunk = fh.read(min(CHUNK_SIZE, self.size - offset))
                    offset = self._patch(url, offset, chunk, bar)
                    bar.update(offset, force=True)
                    failures, chunks = 0, chunks + 1
                    if self.stop_after is not None and chunks >= self.stop_after:
                        raise KeyboardInterrupt
                    continue
                except _Retry as exc:
                    why, wait = str(exc), exc.wait
                except (OSError, http.client.HTTPException) as exc:
                    why, wait = f"{type(exc).__name__}: {exc}", None
                failures += 1
                if failures > RETRIES:
                    bar.close()
                    raise TusFailed(
                        f"upload failed {failures} times in a row ({why}); "
                        "run the same command again to resume"
                    )
                wait = min(wait if wait is not None else 2.0 ** (failures - 1), MAX_WAIT)
                bar.note(f"{why}; retrying in {wait:.0f} s")
                time.sleep(wait)
                resync = True
        bar.close()
