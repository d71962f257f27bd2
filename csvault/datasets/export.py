"""Export a completed dataset as CSV or JSON Lines, streamed in constant memory.

The rows come from ``selectors.dataset_rows_iter`` (keyset-paginated batches
of ``EXPORT_BATCH_ROWS``, each decrypted before the next is read), are turned
into text lines by the pure generators below, and leave as ~64 KiB UTF-8
chunks of a ``StreamingHttpResponse``.

Formats:

* ``csv`` (default): RFC 4180 - comma-separated, ``\\r\\n`` line ends, fields
  quoted only when needed (``"`` doubled), UTF-8 without a BOM. The header row
  is always written first, also for datasets uploaded with ``has_header=false``
  (their generated names ``column_1``, ``column_2``... ), so every export has
  the same shape and re-uploads with the default ``has_header=true``. Cells
  (header names included) that a spreadsheet would run as a formula get a
  leading ``'`` (OWASP "CSV injection"): those starting with ``=``, ``+``, ``-``,
  ``@`` (or their full-width forms U+FF1D, U+FF0B, U+FF0D, U+FF20), also after leading spaces, or
  with a tab or carriage return - unless the cell is a plain number (``-3``,
  ``+1.5e3``), which a spreadsheet reads as that number. ``?formula_safe=0``
  exports every cell exactly (for programs, not spreadsheets). Use JSON Lines
  for the values exactly as stored, too.
* ``jsonl``: one JSON object per ``\\n``-terminated line,
  ``{"row": 1, "data": {"<column>": "<value>", ...}}``, rows numbered from 1
  in file order, keys in column order (column names are unique), values
  exactly as stored (no neutralisation), UTF-8 (``ensure_ascii=False``; only
  U+0085, U+2028 and U+2029 are written as ``\\u`` escapes, so that no
  line-splitting reader sees a line break inside a value).

If the rows read are not exactly 1..``row_count`` (a row is missing, or the
dataset was deleted while it streamed), the stream raises ``ExportIncomplete`` instead of
ending normally: the server then aborts the response, so the client sees a
broken transfer rather than a complete-looking, truncated file.
"""

from __future__ import annotations

import csv
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import chain, islice
from json.encoder import encode_basestring
from operator import add, itemgetter
from urllib.parse import quote

from django.http import StreamingHttpResponse

from csvault.core.errors import CsvaultError
from csvault.core.filenames import visible_name
from csvault.datasets.keys import dataset_columns
from csvault.datasets.models import Dataset
from csvault.datasets.selectors import dataset_rows_iter

logger = logging.getLogger(__name__)

EXPORT_BATCH_ROWS = 5000  # rows per database query (read at call time: tests patch it)
CHUNK_CHARS = 64 * 1024  # about this many characters per streamed chunk (read at call time)

# What a cell a spreadsheet would evaluate starts with: =, +, - or @ (ASCII or
# full-width), after any spaces (ASCII or ideographic); or a tab or a CR.
_FORMULA = re.compile("[ \u3000]*[=+\\-@\uff1d\uff0b\uff0d\uff20]|[\t\r]")
# A plain number is read as a number, not a formula: it stays as it is.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# The first characters that call for a closer look (the loop's cheap test).
FORMULA_TRIGGERS = frozenset("=+-@\t\r \u3000\uff1d\uff0b\uff0d\uff20")
_MAX_STEM = 150
_CHECK_BLOCK_ROWS = 256
_STRIPPED_EXTENSIONS = (".csv", ".tsv", ".txt", ".jsonl", ".ndjson")
_NOT_FALLBACK_SAFE = re.compile(r"[^A-Za-z0-9 ._-]")


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


_CONTENT_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSONL: "application/x-ndjson",
}


class ExportIncomplete(RuntimeError):
    """The rows read do not match the dataset's row count (it changed mid-stream)."""


@dataclass(frozen=True)
class DatasetExport:
    filename: str
    content_type: str
    chunks: Iterator[bytes]


# --- pure formatting ---------------------------------------------------------


def neutralise_cell(value: str) -> str:
    """``value`` with a leading ``'`` if a spreadsheet would read it as a formula.

    A cell is dangerous when it starts with ``=``, ``+``, ``-``, ``@`` or their
    full-width forms (after any leading spaces), or with a tab or carriage return,
    and is not a plain number; any other value (``-3``, ``1-2``, ``a=b``, ``''``,
    ``'x``) is returned unchanged.
    """
    if value[:1] not in FORMULA_TRIGGERS:
        return value
    if _FORMULA.match(value) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


class _Echo:
    """A file-like object whose ``write`` returns what it is given (csv.writer returns it)."""

    def write(self, value: str) -> str:
        return value


def csv_lines(
    columns: Sequence[str], rows: Iterable[Sequence[str]], *, formula_safe: bool = True
) -> Iterator[str]:
    """The CSV text of a header and rows, one record per item (``\\r\\n``-terminated).

    RFC 4180 quoting (``QUOTE_MINIMAL``); with ``formula_safe`` every cell, header
    names included, goes through :func:`neutralise_cell`. The header row is always
    the first item, so a dataset without rows exports as its header line alone.
    """
    writer = csv.writer(_Echo(), lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writerow = writer.writerow
    if not formula_safe:
        yield writerow(columns)
        yield from map(writerow, rows)
        return
    triggers = FORMULA_TRIGGERS
    yield writerow([neutralise_cell(c) for c in columns])
    for row in rows:
        # The cheap test inlined: this loop runs once per cell of the dataset.
        yield writerow([v if v[:1] not in triggers else neutralise_cell(v) for v in row])


def jsonl_lines(columns: Sequence[str], rows: Iterable[tuple[int, Sequence[str]]]) -> Iterator[str]:
    """One ``{"row": n, "data": {column: value, ...}}`` JSON line per ``(n, values)``.

    Values are written exactly (no neutralisation), keys in column order. The
    output is what ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))``
    writes, built from pre-encoded keys (about twice as fast), except that
    U+0085, U+2028 and U+2029 are escaped: each line ends with ``\\n`` and
    contains no other line break of any kind.
    """
    keys = [encode_basestring(column) + ":" for column in columns]
    width = len(keys)
    for n, values in rows:
        if len(values) != width:
            raise ValueError(f"row {n} has {len(values)} values for {width} columns")
        data = ",".join(map(add, keys, map(encode_basestring, values)))
        line = '{"row":' + str(n) + ',"data":{' + data + "}}\n"
        if "\u2028" in line or "\u2029" in line or "\x85" in line:
            # Only possible inside JSON strings, where the escapes mean the same.
            line = (
                line.replace("\u2028", "\\u2028")
                .replace("\u2029", "\\u2029")
                .replace("\x85", "\\u0085")
            )
        yield line


def utf8_chunks(lines: Iterable[str], chunk_chars: int = CHUNK_CHARS) -> Iterator[bytes]:
    """The lines joined and UTF-8 encoded in chunks of about ``chunk_chars`` characters.

    Fewer, larger writes keep the per-row cost of streaming low; a chunk ends at
    a line boundary and nothing is yielded for no input.
    """
    pending: list[str] = []
    size = 0
    for line in lines:
        pending.append(line)
        size += len(line)
        if size >= chunk_chars:
            yield "".join(pending).encode("utf-8")
            pending, size = [], 0
    if pending:
        yield "".join(pending).encode("utf-8")


def export_filename(name: str, export_format: ExportFormat) -> str:
    """A safe download name for a dataset: ``<name>.<csv|jsonl>``.

    Path separators become ``_``; control, format (bidi), private-use and
    unassigned characters are dropped; surrounding spaces and dots are
    stripped; a ``.csv``/``.tsv``/``.txt``/``.jsonl``/``.ndjson`` extension is
    replaced; the stem is cut at 150 characters; an empty stem becomes
    ``dataset``.
    """
    name = visible_name(name.replace("/", "_").replace("\\", "_"))
    if name.lower().endswith(_STRIPPED_EXTENSIONS):
        name = name.rsplit(".", 1)[0].rstrip().rstrip(".")
    stem = name[:_MAX_STEM].rstrip() or "dataset"
    return f"{stem}.{export_format.value}"


def content_disposition(filename: str) -> str:
    """An RFC 6266 ``attachment`` value with an ASCII fallback and the exact UTF-8 name.

    ``attachment; filename="<ascii>"; filename*=UTF-8''<percent-encoded>``: the
    fallback (for old user agents) transliterates accents (``é`` → ``e``) and
    replaces anything but letters, digits, space, ``.``, ``_`` and ``-`` with
    ``_``; ``filename*`` (RFC 8187) carries the name itself. Django's
    ``content_disposition_header`` sends ``filename*`` alone for non-ASCII
    names, hence this function. The result is always pure ASCII.
    """
    stem, dot, extension = filename.rpartition(".")
    if not dot:
        stem, extension = filename, ""
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    ascii_stem = _NOT_FALLBACK_SAFE.sub("_", ascii_stem).strip(" .")
    if not any(ch.isalnum() for ch in ascii_stem):
        ascii_stem = "dataset"
    fallback = f"{ascii_stem}{dot}{_NOT_FALLBACK_SAFE.sub('_', extension)}"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


# --- the export --------------------------------------------------------------


def parse_export_format(value: str | None) -> ExportFormat:
    """The ``format`` query parameter: absent means CSV; anything but csv/jsonl is a 400."""
    if value is None:
        return ExportFormat.CSV
    try:
        return ExportFormat(value)
    except ValueError:
        message = f"Unknown export format {value[:20]!r}; use csv or jsonl."
        raise CsvaultError(message, code="invalid", fields={"format": [message]}) from None


def _checked(
    dataset: Dataset, rows: Iterator[tuple[int, list[str]]]
) -> Iterator[tuple[int, list[str]]]:
    """The rows, checked to be numbered exactly 1, 2, ... up to the dataset's ``row_count``.

    Checked per block of rows, not per row: the rows arrive in strictly
    increasing order, so a block whose last number equals the count so far
    proves that none is missing.
    """
    return chain.from_iterable(_checked_blocks(dataset, rows))


def _checked_blocks(
    dataset: Dataset, rows: Iterator[tuple[int, list[str]]]
) -> Iterator[list[tuple[int, list[str]]]]:
    count = 0
    while block := list(islice(rows, _CHECK_BLOCK_ROWS)):
        count += len(block)
        if block[-1][0] != count:
            raise _incomplete(dataset, f"row {block[-1][0]} came as row {count}")
        yield block
    if dataset.row_count is not None and count != dataset.row_count:
        raise _incomplete(dataset, f"{count} rows read, {dataset.row_count} expected")


def _incomplete(dataset: Dataset, problem: str) -> ExportIncomplete:
    logger.error("export of dataset %s broken off: %s", dataset.id, problem)
    return ExportIncomplete(f"dataset {dataset.id}: {problem}")


def parse_formula_safe(value: str | None) -> bool:
    """The ``formula_safe`` query parameter: absent, ``1`` or ``true`` (the default)
    neutralise formulas; ``0`` or ``false`` export cells exactly; anything else is a 400."""
    if value is None or value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    message = "formula_safe must be 1 or 0."
    raise CsvaultError(message, code="invalid", fields={"formula_safe": [message]})


def dataset_export(
    *, dataset: Dataset, export_format: ExportFormat, formula_safe: bool = True
) -> DatasetExport:
    """The whole of a completed dataset as a lazily produced stream of UTF-8 chunks.

    Raises ``NotReady`` (409) now, before anything is streamed, unless the
    dataset is completed. Nothing is read from the rows table until the
    chunks are iterated; then one query of ``EXPORT_BATCH_ROWS`` rows at a time.
    """
    rows = _checked(dataset, dataset_rows_iter(dataset=dataset, batch_rows=EXPORT_BATCH_ROWS))
    columns = dataset_columns(dataset)
    if export_format is ExportFormat.CSV:
        lines = csv_lines(columns, map(itemgetter(1), rows), formula_safe=formula_safe)
    else:
        lines = jsonl_lines(columns, rows)
    return DatasetExport(
        filename=export_filename(dataset.name, export_format),
        content_type=_CONTENT_TYPES[export_format],
        chunks=utf8_chunks(lines, CHUNK_CHARS),
    )


def export_response(export: DatasetExport, *, with_body: bool = True) -> StreamingHttpResponse:
    """The HTTP response streaming an export as an attachment, never cached.

    ``with_body=False`` (for HEAD) sends the same headers with an empty body;
    the export's chunks are then never iterated, so no row is read.
    """
    chunks: Iterator[bytes] = export.chunks if with_body else iter(())
    response = StreamingHttpResponse(chunks, content_type=export.content_type)
    response["Content-Disposition"] = content_disposition(export.filename)
    response["Cache-Control"] = "no-store"
    # Stop a buffering reverse proxy (nginx) from spooling decrypted rows to its disk.
    response["X-Accel-Buffering"] = "no"
    return response
