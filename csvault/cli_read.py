"""The reading commands of ``csvault``: list, show (status), rows, head, profile, and
following a dataset's ingest (``--watch``). Standard library only.

Tables go to stdout as aligned text (cells cut to a width, control characters shown
escaped); ``rows`` and ``head --csv`` write CSV (UTF-8, LF line ends, minimal quoting),
every value exactly as stored.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from csvault import cli_progress
from csvault.cli_http import Client, CliError, write_out, write_text

FINAL = {"completed", "failed", "rejected", "cancelled"}
#: Rows per request (the API's largest page).
ROWS_PAGE = 1000
#: A table cell is cut to this many columns (``…``).
CELL_WIDTH = 40
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: Line and paragraph separators, and the bidirectional overrides that would reorder
#: what a terminal shows: escaped like control characters.
_INVISIBLE = {"Cc", "Zl", "Zp"}
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


# -- tables -------------------------------------------------------------------------------


def width(text: str) -> int:
    """Terminal columns: East Asian wide characters take two, combining marks none."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def _escape(ch: str) -> str:
    if unicodedata.category(ch) not in _INVISIBLE and ch not in _BIDI:
        return ch
    return _ESCAPES.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def cell(value: Any, limit: int = CELL_WIDTH) -> str:
    """A value for a table: ``-`` for none, control characters escaped, cut to ``limit``."""
    if value is None:
        return "-"
    text = "".join(_escape(ch) for ch in str(value))
    if width(text) <= limit:
        return text
    out, used = "", 0
    for ch in text:
        if used + width(ch) > limit - 1:
            break
        out, used = out + ch, used + width(ch)
    return out + "…"


def table(header: list[str], rows: Iterable[list[str]], right: Iterable[int] = ()) -> str:
    """Aligned columns, two spaces apart; the columns in ``right`` aligned right."""
    rows = list(rows)
    widths = [max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(header)]
    right = set(right)

    def line(values: list[str]) -> str:
        cells = []
        for i, value in enumerate(values):
            pad = " " * (widths[i] - width(value))
            cells.append(pad + value if i in right else value + pad)
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)]) + "\n"


def csv_text(rows: Iterable[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


def count(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def when(value: str | None) -> str:
    """An API timestamp in local time, to the minute."""
    if not value:
        return "-"
    try:
        return (
            datetime.fromisoformat(value.replace("Z", "+00:00"))
            .astimezone()
            .strftime("%Y-%m-%d %H:%M")
        )
    except ValueError:
        return value


# -- list, show ---------------------------------------------------------------------------


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    datasets = client.pages(
        "/api/datasets/",
        page_size=args.page_size,
        status=args.status or None,
        search=args.search or None,
    )
    rows = [
        [
            d["id"],
            cell(d["name"], 32),
            d["status"],
            count(d["row_count"]),
            cli_progress.size(d["size"]),
            when(d["created_at"]),
        ]
        for d in datasets
    ]
    if not rows:
        print("no datasets", file=sys.stderr)
        return 0
    write_text(table(["id", "name", "status", "rows", "size", "created"], rows, right=(3, 4)))
    return 0


def _delimiter(dataset: dict[str, Any]) -> str:
    value = dataset["delimiter"]
    if not value:
        return "- (detected during the scan)"
    shown = "tab" if value == "\t" else repr(value)
    return f"{shown} (detected)" if dataset.get("delimiter_detected") else shown


def _encoding(dataset: dict[str, Any]) -> str:
    value = dataset["encoding"]
    if not value:
        return "- (detected during the scan)"
    return f"{value} (detected)" if dataset.get("encoding_detected") else value


def describe_error(error: dict[str, Any]) -> str:
    where = ", ".join(f"{k} {error[k]}" for k in ("row", "column", "line") if error.get(k))
    return f"{error.get('code', '')}: {error.get('message', '')}" + (f" ({where})" if where else "")


def describe_progress(progress: dict[str, Any]) -> str:
    text = (
        f"{progress['status']:<10} {progress['percent']:6.2f}%  {progress['rows_processed']:,} rows"
    )
    if progress.get("rows_per_second"):
        text += f"  {progress['rows_per_second']:,.0f} rows/s"
    if progress.get("eta_seconds"):
        text += f"  ETA {progress['eta_seconds']:.0f} s"
    return text


def show_text(d: dict[str, Any]) -> str:
    items = [
        ("id", d["id"]),
        ("name", cell(d["name"], 200)),
        ("file", cell(d["filename"], 200)),
        ("status", d["status"]),
    ]
    if d["status"] == "uploading":
        items.append(
            (
                "received",
                f"{cli_progress.size(d['bytes_received'])} of {cli_progress.size(d['size'])}",
            )
        )
    items += [
        ("rows", count(d["row_count"])),
        ("columns", ", ".join(cell(c) for c in d["columns"]) or "-"),
        ("size", f"{cli_progress.size(d['size'])} ({d['size']:,} bytes)"),
        ("header", "yes" if d["has_header"] else "no (columns named column_1, column_2...)"),
        ("delimiter", _delimiter(d)),
        ("encoding", _encoding(d)),
        ("sha256", d["sha256"] or "-"),
        ("created", when(d["created_at"])),
        ("finished", when(d["finished_at"])),
    ]
    if d["status"] not in FINAL and d.get("progress"):
        items.append(("progress", describe_progress(d["progress"])))
    items += [("warning", cell(describe_error(w), 1000)) for w in d.get("warnings") or []]
    if d.get("error"):
        items.append(("error", cell(describe_error(d["error"]), 1000)))
    return "".join(f"{name:<10} {value}\n" for name, value in items)


def cmd_show(client: Client, args: argparse.Namespace) -> int:
    if args.watch:
        return watch(client, args.id)
    dataset = client.json("GET", f"/api/datasets/{args.id}/")
    write_text(json.dumps(dataset, indent=2) + "\n" if args.json else show_text(dataset))
    return 0


# -- rows, head, profile ------------------------------------------------------------------


def rows(
    client: Client, dataset_id: str, after: int, limit: int | None
) -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    """Pages of ``(columns, results)`` from row ``after`` on, ``limit`` rows at most."""
    while True:
        size = ROWS_PAGE if limit is None else min(ROWS_PAGE, limit)
        page = client.json("GET", f"/api/datasets/{dataset_id}/rows/", after=after, limit=size)
        results = page["results"]
        yield page["columns"], results
        if limit is not None:
            limit -= len(results)
        if not page["next"] or not results or (limit is not None and limit <= 0):
            return
        after = results[-1]["row"]


def cmd_rows(client: Client, args: argparse.Namespace) -> int:
    header = not args.no_header
    for columns, results in rows(client, args.id, args.after, args.limit):
        lines = [columns] if header else []
        header = False
        write_out(csv_text(lines + [r["values"] for r in results]))
    return 0


def cmd_head(client: Client, args: argparse.Namespace) -> int:
    if args.n < 1:
        raise CliError("-n must be 1 or more")
    columns: list[str] = []
    results: list[dict[str, Any]] = []
    for page_columns, page in rows(client, args.id, 0, args.n):
        columns, results = page_columns, results + page
    if args.csv:
        write_out(csv_text([columns, *(r["values"] for r in results)]))
        return 0
    body = [[str(r["row"]), *(cell(v) for v in r["values"])] for r in results]
    write_text(table(["row", *(cell(c) for c in columns)], body, right=(0,)))
    return 0


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return str(value)


def cmd_profile(client: Client, args: argparse.Namespace) -> int:
    profile = client.json("GET", f"/api/datasets/{args.id}/profile/")
    body = [
        [
            cell(c["name"]),
            c["type"],
            f"{c['nulls']:,}",
            cell(_number(c["min"])),
            cell(_number(c["max"])),
            ("" if c.get("distinct_exact", True) else "~") + f"{c['distinct']:,}",
        ]
        for c in profile["columns"]
    ]
    header = ["column", "type", "nulls", "min", "max", "distinct"]
    write_text(table(header, body, right=(2, 5)))
    print(f"{profile['row_count']:,} rows", file=sys.stderr)
    return 0


# -- following an ingest ------------------------------------------------------------------


def watch(client: Client, dataset_id: str, label: str = "") -> int:
    """Follow the events until a final status; the exit status of :func:`finish`."""
    line = cli_progress.Line()
    last: dict[str, Any] = {}
    prefix = f"{label}: " if label else ""
    for name, data in client.events(dataset_id):
        if name == "error":
            line.close()
            raise CliError(data.get("message", "the dataset is gone"))
        last = data
        line.show(
            prefix + describe_progress(data),
            fraction=data["percent"] / 100,
            stage=data["status"],
            final=name == "end",
        )
    line.close()
    return finish(client, dataset_id, last.get("status", ""), label)


def finish(client: Client, dataset_id: str, status: str, label: str = "") -> int:
    """Print the outcome: on stdout when completed (exit 0), else on stderr (exit 1)."""
    dataset = client.json("GET", f"/api/datasets/{dataset_id}/")
    prefix = f"{label}: " if label else ""
    if status == "completed" or dataset["status"] == "completed":
        print(f"{prefix}completed: {dataset['row_count']:,} rows, columns {dataset['columns']}")
        return 0
    error = dataset.get("error") or {}
    cli_progress.message(f"{prefix}{dataset['status']}: {describe_error(error)}")
    return 1
