"""``csvault``: upload CSV files, watch their ingest, read them back — from a terminal.

    csvault login --url https://csvault.example.com alice     # prints a token
    export CSVAULT_URL=https://csvault.example.com CSVAULT_TOKEN=...
    csvault upload a.csv b.csv --watch       # prints each dataset id; exit 0 once all completed
    csvault list [--status S] [--search TEXT]
    csvault show ID                          # or: csvault status ID; --json, --watch
    csvault head ID [-n 10] [--csv]
    csvault rows ID [--after N] [--limit N]  # CSV on stdout
    csvault profile ID
    csvault export ID --format csv -o out.csv
    csvault cancel ID
    csvault delete ID [--yes]
    csvault logout

Only the standard library. A file is streamed from disk (never read into memory) in a
multipart body whose length is computed beforehand; files of 8 MiB and more go as a
resumable tus upload instead (csvault/cli_tus.py: run the same command again after an
interruption to resume). Progress goes to stderr: a bar redrawn in place on a terminal,
plain lines (each tenth, each few seconds, and the last state) when stderr is a pipe or
a file. ``--watch`` follows a dataset's Server-Sent Events until a final status. Every
error is one line on stderr, ``csvault: ...``, with the server's reason and field errors.

Exit status:
  0    success
  1    a dataset failed, was rejected or was cancelled (``upload --watch``, ``show --watch``)
  2    usage error, a file that cannot be read or written, the server cannot be reached,
       or an error answer from the server
  130  interrupted (Ctrl-C)
  141  stdout was closed early (``csvault rows ID | head -1``): the output stops quietly,
       as for a program that SIGPIPE ends
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import os
import sys
import time
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlencode

from csvault import cli_progress, cli_read, cli_tus
from csvault.cli_http import (
    CHUNK,
    Client,
    CliError,
    Unreachable,
    decode,
    one_line,
    reason,
    write_all,
)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A usage error is one line too (argparse prints the usage as well)."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _client(args: argparse.Namespace, *, token_needed: bool = True) -> Client:
    if not args.url:
        raise CliError("set --url or CSVAULT_URL")
    if token_needed and not args.token:
        raise CliError("set --token or CSVAULT_TOKEN (get one with `csvault login`)")
    return Client(args.url, args.token)


def _what(dataset: dict[str, str]) -> str:
    return f"{cli_read.cell(dataset['name'], 200)} ({dataset['id']})"


def cmd_login(args: argparse.Namespace) -> int:
    client = _client(args, token_needed=False)
    try:
        password = os.environ.get("CSVAULT_PASSWORD") or getpass.getpass(
            f"password for {args.username}: "
        )
    except EOFError:
        raise CliError("no password given (type it, or set CSVAULT_PASSWORD)") from None
    body = client.json(
        "POST", "/api/auth/token/", {"username": args.username, "password": password}
    )
    print(body["token"])
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    _client(args).json("POST", "/api/auth/logout/")
    print("token revoked", file=sys.stderr)
    return 0


def _upload_one(
    client: Client, args: argparse.Namespace, path: Path, fields: dict[str, str]
) -> str:
    resumable = args.tus if args.tus is not None else path.stat().st_size >= cli_tus.THRESHOLD
    if not resumable:
        return str(client.upload(path, fields, progress=not args.quiet)["id"])
    upload = cli_tus.TusUpload(
        client.url, client.headers(), path, {"filename": path.name, **fields},
        progress=not args.quiet,
    )  # fmt: skip
    try:
        return upload.run()
    except cli_tus.TusFailed as exc:
        raise CliError(str(exc)) from None


def cmd_upload(args: argparse.Namespace) -> int:
    paths = [Path(name) for name in args.files]
    if args.name and len(paths) > 1:
        raise CliError("--name names one dataset: give it with one file")
    for path in paths:  # all readable, or nothing is sent
        try:
            path.open("rb").close()
        except OSError as exc:
            raise CliError(f"cannot read {path}: {reason(exc)}") from None
    client = _client(args)
    fields = {"has_header": "false" if args.no_header else "true"}
    # Not sent when not given: the server detects them.
    for field in ("name", "delimiter", "encoding"):
        if getattr(args, field):
            fields[field] = getattr(args, field)
    several = len(paths) > 1
    status, uploaded = 0, []
    for path in paths:
        try:
            dataset_id = _upload_one(client, args, path, fields)
        except Unreachable:
            raise
        except CliError as exc:
            if not several:
                raise
            cli_progress.message(f"csvault: {path}: {one_line(str(exc))}")
            status = 2
            continue
        print(dataset_id, flush=True)
        uploaded.append((path, dataset_id))
    if args.watch:
        for path, dataset_id in uploaded:
            label = path.name if several else ""
            status = max(status, cli_read.watch(client, dataset_id, label))
    return status


def cmd_export(args: argparse.Namespace) -> int:
    client = _client(args)
    query = urlencode({"format": args.format})
    response = client.request("GET", f"/api/datasets/{args.id}/export/?{query}")
    if response.status != 200:
        decode(response)
    to_stdout = args.output == "-"
    try:
        out = sys.stdout.buffer if to_stdout else open(args.output, "wb")  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"cannot write {args.output}: {reason(exc)}") from None
    started, written = time.monotonic(), 0
    try:
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException):
                raise CliError(
                    "the export was cut short by the server; the output is incomplete"
                ) from None
            if not chunk:
                break
            try:
                write_all(out, chunk)
            except OSError as exc:
                if to_stdout:
                    raise  # a closed pipe: main() ends quietly
                raise CliError(f"cannot write {args.output}: {reason(exc)}") from None
            written += len(chunk)
        out.flush()
    finally:
        if not to_stdout:
            out.close()
    size = cli_progress.size(written)
    print(f"exported {size} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    dataset = _client(args).json("POST", f"/api/datasets/{args.id}/cancel/")
    if dataset["status"] == "cancelled":
        print(f"cancelled: {_what(dataset)}")
    else:
        print(
            f"{_what(dataset)} is {dataset['status']} already: nothing to cancel", file=sys.stderr
        )
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    client = _client(args)
    dataset = client.json("GET", f"/api/datasets/{args.id}/")
    what = _what(dataset)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(f"not deleting {what}: stdin is not a terminal to ask on; add --yes")
        print(f"Delete dataset {what}? [y/N] ", end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("not deleted", file=sys.stderr)
            return 0
    response = client.request("DELETE", f"/api/datasets/{args.id}/")
    if response.status != 204:
        decode(response)
    print(f"deleted: {what}")
    return 0


def _reader(command: str) -> dict[str, object]:
    """``set_defaults`` for a command of csvault.cli_read (it takes a client)."""
    run = getattr(cli_read, f"cmd_{command}")
    return {"func": lambda args: run(_client(args), args)}


def parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    top = Parser(
        prog="csvault",
        description=doc.split("\n\n")[0].replace("``", ""),
        epilog="Exit status:" + doc.split("Exit status:")[-1].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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

    up = sub.add_parser("upload", help="upload CSV files; prints each dataset id")
    up.add_argument("files", nargs="+", metavar="FILE")
    up.add_argument("--name", help="the dataset's name (one file only; default: the file name)")
    up.add_argument(
        "--delimiter", default="", help="one character, or tab; detected when not given"
    )
    up.add_argument(
        "--encoding", default="", help="e.g. utf-8, utf-16, windows-1252; detected when not given"
    )
    up.add_argument("--no-header", action="store_true", help="the first line is data")
    up.add_argument("--watch", action="store_true", help="follow each ingest until it is final")
    up.add_argument("--quiet", action="store_true", help="no upload progress")
    up.add_argument(
        "--tus",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"resumable upload (default: files of {cli_tus.THRESHOLD >> 20} MiB and more); "
        "run again after an interruption to resume",
    )
    up.set_defaults(func=cmd_upload)

    listing = sub.add_parser("list", help="your datasets, newest first")
    listing.add_argument("--status", help="only this status (completed, failed, pending...)")
    listing.add_argument("--search", help="only names containing this (any case)")
    listing.add_argument(
        "--page-size", type=int, default=200, help="datasets per request (default 200, at most 200)"
    )
    listing.set_defaults(**_reader("list"))

    show = sub.add_parser("show", aliases=["status"], help="a dataset (--watch to follow it)")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="the API's JSON")
    show.add_argument("--watch", action="store_true", help="follow the ingest until it is final")
    show.set_defaults(**_reader("show"))

    rows = sub.add_parser("rows", help="rows as CSV on stdout, values exactly as stored")
    rows.add_argument("id")
    rows.add_argument("--after", type=int, default=0, help="start after this row number")
    rows.add_argument("--limit", type=int, help="at most this many rows (default: all)")
    rows.add_argument("--no-header", action="store_true", help="no header line")
    rows.set_defaults(**_reader("rows"))

    head = sub.add_parser("head", help="the first rows as a table")
    head.add_argument("id")
    head.add_argument("-n", type=int, default=10, help="how many rows (default 10)")
    head.add_argument("--csv", action="store_true", help="CSV instead of a table")
    head.set_defaults(**_reader("head"))

    profile = sub.add_parser("profile", help="per column: type, nulls, min, max, distinct")
    profile.add_argument("id")
    profile.set_defaults(**_reader("profile"))

    export = sub.add_parser("export", help="download a completed dataset")
    export.add_argument("id")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.add_argument("-o", "--output", default="-", help="file to write (default stdout)")
    export.set_defaults(func=cmd_export)

    cancel = sub.add_parser("cancel", help="stop a dataset's scan or ingest")
    cancel.add_argument("id")
    cancel.set_defaults(func=cmd_cancel)

    delete = sub.add_parser("delete", help="delete a dataset (asks first)")
    delete.add_argument("id")
    delete.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    delete.set_defaults(func=cmd_delete)
    return top


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        status = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except CliError as exc:
        cli_progress.message(f"csvault: {one_line(str(exc))}")
        return 2
    except KeyboardInterrupt as exc:
        cli_progress.message(f"csvault: {exc.args[0] if exc.args else 'interrupted'}")
        return 130
    except BrokenPipeError:
        # The reader is gone: nothing more to say to it, and nothing to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
