"""``csvault``: upload a CSV file, watch its ingest, read it back — from a terminal.

    csvault login --url https://csvault.example.com alice     # prints a token
    export CSVAULT_URL=https://csvault.example.com CSVAULT_TOKEN=...
    csvault upload data.csv --watch                            # exit 0 once completed
    csvault status ID
    csvault export ID --format csv -o out.csv
    csvault logout

Only the standard library: the file is streamed from disk (never read into memory)
in a multipart body whose length is computed beforehand, with a progress line on
stderr; files of 8 MiB and more go as a resumable tus upload instead (csvault/cli_tus.py:
run the same command again after an interruption to resume). ``--watch`` follows the
dataset's Server-Sent Events until a final status.
Exit status: 0 success, 1 the dataset failed or was rejected (the error is printed),
2 usage or connection problems or an error answer from the server.
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode, urlsplit

from csvault import cli_tus

CHUNK = 1 << 20
FINAL = {"completed", "failed", "rejected", "cancelled"}


class CliError(Exception):
    """A problem to print and exit with status 2."""


class Client:
    def __init__(self, url: str, token: str | None, timeout: float = 60.0) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CliError(f"--url must be http(s)://host[:port], not {url!r}")
        self.scheme, self.netloc, self.base = parts.scheme, parts.netloc, parts.path
        self.token = token
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.netloc, timeout=self.timeout)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
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
            conn.request(method, self.base + path, body=body, headers=self._headers(headers))
            return conn.getresponse()
        except OSError as exc:
            raise CliError(f"cannot reach {self.scheme}://{self.netloc}: {exc}") from None

    def json(self, method: str, path: str, form: dict[str, str] | None = None) -> Any:
        body = urlencode(form).encode() if form is not None else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if form else None
        response = self.request(method, path, body, headers)
        return _decode(response)

    def upload(self, path: Path, fields: dict[str, str], progress: bool) -> Any:
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
            conn.putrequest("POST", self.base + "/api/datasets/")
            headers = self._headers(
                {
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                    "Content-Length": str(len(head) + size + len(tail)),
                }
            )
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            conn.send(head)
            with path.open("rb") as fh:
                for sent in _send_file(conn, fh):
                    if progress:
                        _progress_line(f"uploading {_mib(sent)} of {_mib(size)}")
            conn.send(tail)
            if progress:
                print(file=sys.stderr)
            return _decode(conn.getresponse())
        except (BrokenPipeError, ConnectionResetError):
            # The server answered early (413, 429...) and closed: read that answer.
            try:
                return _decode(conn.getresponse())
            except (OSError, http.client.HTTPException):
                raise CliError("the server closed the connection during the upload") from None
        except OSError as exc:
            raise CliError(f"upload failed: {exc}") from None

    def events(self, dataset_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Server-Sent Events of a dataset, reconnecting until an ``end`` event."""
        while True:
            response = self.request(
                "GET",
                f"/api/datasets/{dataset_id}/events/",
                headers={"Accept": "text/event-stream"},
            )
            if response.status != 200:
                _decode(response)  # raises with the server's message
            name, data = "", ""
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


def _send_file(conn: http.client.HTTPConnection, fh: BinaryIO) -> Iterator[int]:
    sent = 0
    while chunk := fh.read(CHUNK):
        conn.send(chunk)
        sent += len(chunk)
        yield sent


def _decode(response: http.client.HTTPResponse) -> Any:
    raw = response.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    if response.status >= 400:
        error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
        message = error.get("message") or raw[:200].decode(errors="replace")
        retry = response.getheader("Retry-After")
        hint = f" (retry after {retry} s)" if retry else ""
        raise CliError(f"HTTP {response.status} {error.get('code', '')}: {message}{hint}")
    return body


def _mib(size: float) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def _progress_line(text: str) -> None:
    print(f"\r{text:<70}", end="", file=sys.stderr, flush=True)


def _describe(progress: dict[str, Any]) -> str:
    text = (
        f"{progress['status']:<10} {progress['percent']:6.2f}%  {progress['rows_processed']:,} rows"
    )
    if progress.get("rows_per_second"):
        text += f"  {progress['rows_per_second']:,.0f} rows/s"
    if progress.get("eta_seconds"):
        text += f"  ETA {progress['eta_seconds']:.0f} s"
    return text


def watch(client: Client, dataset_id: str) -> int:
    last: dict[str, Any] = {}
    for name, data in client.events(dataset_id):
        if name == "error":
            raise CliError(data.get("message", "the dataset is gone"))
        last = data
        _progress_line(_describe(data))
    print(file=sys.stderr)
    return finish(client, dataset_id, last.get("status", ""))


def finish(client: Client, dataset_id: str, status: str) -> int:
    dataset = client.json("GET", f"/api/datasets/{dataset_id}/")
    if status == "completed" or dataset["status"] == "completed":
        print(f"completed: {dataset['row_count']:,} rows, columns {dataset['columns']}")
        return 0
    error = dataset.get("error") or {}
    where = ", ".join(f"{k} {error[k]}" for k in ("row", "column", "line") if error.get(k))
    print(
        f"{dataset['status']}: {error.get('code', '')}: {error.get('message', '')}"
        + (f" ({where})" if where else ""),
        file=sys.stderr,
    )
    return 1


def _client(args: argparse.Namespace, *, token_needed: bool = True) -> Client:
    if not args.url:
        raise CliError("set --url or CSVAULT_URL")
    if token_needed and not args.token:
        raise CliError("set --token or CSVAULT_TOKEN (get one with `csvault login`)")
    return Client(args.url, args.token)


def cmd_login(args: argparse.Namespace) -> int:
    password = os.environ.get("CSVAULT_PASSWORD") or getpass.getpass(
        f"password for {args.username}: "
    )
    body = _client(args, token_needed=False).json(
        "POST", "/api/auth/token/", {"username": args.username, "password": password}
    )
    print(body["token"])
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    _client(args).json("POST", "/api/auth/logout/")
    print("token revoked", file=sys.stderr)
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    client = _client(args)
    fields = {"has_header": "false" if args.no_header else "true"}
    # Not sent when not given: the server detects them.
    for field in ("name", "delimiter", "encoding"):
        if getattr(args, field):
            fields[field] = getattr(args, field)
    resumable = args.tus if args.tus is not None else path.stat().st_size >= cli_tus.THRESHOLD
    if resumable:
        metadata = {"filename": path.name, **fields}
        upload = cli_tus.TusUpload(
            args.url, client._headers(), path, metadata, progress=not args.quiet
        )
        try:
            dataset_id = upload.run()
        except cli_tus.TusFailed as exc:
            raise CliError(str(exc)) from None
    else:
        dataset_id = client.upload(path, fields, progress=not args.quiet)["id"]
    print(dataset_id)
    if args.watch:
        return watch(client, dataset_id)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.watch:
        return watch(client, args.id)
    print(json.dumps(client.json("GET", f"/api/datasets/{args.id}/"), indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    client = _client(args)
    response = client.request(
        "GET", f"/api/datasets/{args.id}/export/?{urlencode({'format': args.format})}"
    )
    if response.status != 200:
        _decode(response)
    out = open(args.output, "wb") if args.output != "-" else sys.stdout.buffer  # noqa: SIM115
    started, written = time.monotonic(), 0
    try:
        while chunk := response.read(CHUNK):
            out.write(chunk)
            written += len(chunk)
    except http.client.IncompleteRead:
        raise CliError("the export was cut short by the server; the output is incomplete") from None
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    print(f"exported {_mib(written)} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="csvault", description=__doc__.split("\n\n")[0])
    top.add_argument("--url", default=os.environ.get("CSVAULT_URL"), help="server (CSVAULT_URL)")
    top.add_argument(
        "--token", default=os.environ.get("CSVAULT_TOKEN"), help="API token (CSVAULT_TOKEN)"
    )
    sub = top.add_subparsers(dest="command", required=True)

    login = sub.add_parser(
        "login", help="print an API token (password from a prompt or CSVAULT_PASSWORD)"
    )
    login.add_argument("username")
    login.set_defaults(func=cmd_login)

    sub.add_parser("logout", help="revoke the token").set_defaults(func=cmd_logout)

    up = sub.add_parser("upload", help="upload a CSV file; prints the dataset id")
    up.add_argument("file")
    up.add_argument("--name")
    up.add_argument(
        "--delimiter", default="", help="one character, or tab; detected when not given"
    )
    up.add_argument(
        "--encoding", default="", help="e.g. utf-8, utf-16, windows-1252; detected when not given"
    )
    up.add_argument("--no-header", action="store_true", help="the first line is data")
    up.add_argument("--watch", action="store_true", help="follow the ingest until it is final")
    up.add_argument("--quiet", action="store_true", help="no upload progress line")
    up.add_argument(
        "--tus",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"resumable upload (default: files of {cli_tus.THRESHOLD >> 20} MiB and more); "
        "run again after an interruption to resume",
    )
    up.set_defaults(func=cmd_upload)

    status = sub.add_parser("status", help="show a dataset (or follow it with --watch)")
    status.add_argument("id")
    status.add_argument("--watch", action="store_true")
    status.set_defaults(func=cmd_status)

    export = sub.add_parser("export", help="download a completed dataset")
    export.add_argument("id")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.add_argument("-o", "--output", default="-", help="file to write (default stdout)")
    export.set_defaults(func=cmd_export)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"csvault: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
