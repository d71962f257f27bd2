"""Stream an uploaded CSV file row by row, in constant memory, and validate it.

``open_csv(chunks)`` takes the file as an iterable of byte chunks of any size
(for example 64 KiB pieces from the decrypting reader), reads the header at
once and returns a :class:`CsvStream`; ``stream.read_rows(n)`` returns the next
data rows (each a ``list[str]``), at most ``n`` at a time. The first problem
found raises :class:`CsvDataError`, which says what is wrong and where (row,
column, physical line, byte offset).

Format rules (the documented behaviour the rest of csvault relies on):

* Encoding: the one given to :func:`open_csv` (csvault/csvio/detect.py detects it
  before the ingest), strictly; its byte order mark is dropped. Without one: UTF-8,
  or UTF-16 LE/BE after a byte order mark; a file that looks like UTF-16 without a
  byte order mark is refused. Any NUL character is refused.
* Syntax: what :func:`csv.reader` accepts with ``strict=True`` and the default
  double-quote escaping, plus RFC 4180's rule that a value containing a quote
  must be quoted: a quote inside an unquoted value (``a,b"c,d``, or ``1, "x"``
  where the value starts with a space) is an error (``stray_quote``), as is a
  closing quote followed by anything but the delimiter or the end of the line
  (``"b"c``). In UTF-8 files the stray quotes found are those between two
  other characters of a value (the usual case, found by a byte scan that costs
  milliseconds per 100 MB); a quote that ends an unquoted value (``a,b",c``)
  is kept as a literal character, as Excel and Python's csv read it.
* Line ends: LF, CRLF and lone CR all end a line; the last line may lack one.
* Blank lines outside quotes are skipped: they are not rows and do not count
  in row numbers (a one-column file writes an empty value as ``""``, which is
  a row). Blank lines inside a quoted value are part of the value.
* Values are returned exactly as written: no trimming, no type conversion,
  empty strings kept, line breaks inside quoted values kept verbatim.
* Header: the first non-blank row. Its names are kept exactly, except for three
  spreadsheet habits, tolerated and recorded in ``CsvStream.warnings``: empty names
  at the end of the header are dropped with their columns (a value in such a column
  is an error, ``value_in_unnamed_column``; rows may stop before those columns),
  another empty name becomes ``column_N`` (N: its position), and a repeated name
  gets a suffix (``_2``, ``_3``... the first free one). A header without any name is
  an error. A header-only file has no rows. With
  ``has_header=False`` the columns are named ``column_1`` ... and the first row is
  data row 1.
* Every data row must have as many fields as the header.

Numbering in errors: ``row`` is the 1-based data row (1 = the first row after
the header; blank lines are not counted) and is ``None`` for problems in the
header itself; ``line`` is the 1-based physical line (CR, LF and CRLF each end
one) where the row starts, or where the problem is when that is more precise;
``column`` is 1-based; ``offset`` is the 0-based byte offset in the raw input,
byte order mark included.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable
from itertools import islice

from csvault.csvio.errors import CsvDataError, SourceError
from csvault.csvio.limits import DEFAULT_LIMITS, CsvLimits, check_delimiter
from csvault.csvio.lines import LineSource, line_breaks

__all__ = ["DEFAULT_LIMITS", "CsvDataError", "CsvLimits", "CsvStream", "open_csv"]


def _describe(char: str) -> str:
    names = {"\t": "a tab", " ": "a space", ",": "a comma", ";": "a semicolon", "|": "a pipe"}
    return names.get(char, repr(char))


class CsvStream:
    """An open CSV file: ``columns`` at once, then the data rows from :meth:`read_rows`.

    Create it with :func:`open_csv`. Reading is single-pass: it consumes the
    chunk iterable as it goes and returns ``list[str]`` rows in file order (the
    caller counts them: the first is row 1). ``bytes_consumed`` tells how many
    raw bytes have been pulled from the input so far (it may run up to one
    chunk ahead of the rows returned), for progress reports.
    """

    columns: list[str]
    encoding: str

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        delimiter: str = ",",
        has_header: bool = True,
        limits: CsvLimits = DEFAULT_LIMITS,
        encoding: str | None = None,
    ) -> None:
        check_delimiter(delimiter)
        self._limits = limits
        self._has_header = has_header
        self._delimiter = delimiter
        # Spreadsheet habits tolerated (see read_header): each as {"code", "message", ...}.
        self.warnings: list[dict[str, object]] = []
        # Empty-named columns at the end of the header, dropped (their values must be empty).
        self._dropped = 0
        self._source = LineSource(chunks, limits, delimiter, encoding)
        self.encoding = self._source.encoding
        # Process-global; the C reader reads it as it parses, so set it per open.
        csv.field_size_limit(limits.max_field_bytes)
        self._reader = csv.reader(
            itertools.chain.from_iterable(self._source.batches()),
            delimiter=delimiter,
            strict=True,
        )
        self._first_row: list[str] | None = None
        #: The header row as the file has it (before names are made unique, and with
        #: any dropped empty columns), for the fast path's check that it reads the same.
        self.header_as_read: list[str] = []
        self.columns = self._read_header()
        # State of read_rows(): data rows returned, the problem that ended the
        # file (raised once the rows before it are returned), whether it ended.
        self._count = 0
        self._problem: CsvDataError | None = None
        self._done = False

    @property
    def dropped_columns(self) -> int:
        """Empty-named columns dropped from the end of the header (see _header_names)."""
        return self._dropped

    @property
    def bytes_consumed(self) -> int:
        """Raw input bytes pulled from the chunk iterable so far."""
        return self._source.bytes_consumed

    def read_rows(self, limit: int) -> list[list[str]]:
        """The next data rows, at most ``limit`` of them; ``[]`` at the end of the file.

        Fewer rows come back only where blank lines were dropped, at the end of
        the file, or before a problem: the rows before it are returned first and
        the next call raises :class:`CsvDataError` (as does every call after).
        The caller may vary ``limit`` from call to call.

        Fast path: ``csv.reader`` fills the list in C (``list.extend`` over
        ``islice``), and one ``set(map(len, ...))`` checks every width at once.
        Only a list that holds a blank line, a ragged row or a row past the row
        limit is walked row by row, which is also where the line of the offending
        row is computed: the reader's line count before the list plus the
        physical lines each earlier row took.
        """
        if limit < 1:
            raise ValueError("limit must be positive")
        rows: list[list[str]] = []
        if self._first_row is not None:
            first, self._first_row = self._first_row, None
            if self._limits.max_rows < 1:
                self._problem = self._too_many_rows(1, self._row_line(first))
                self._done = True
            else:
                rows, self._count = [first], 1
        reader = self._reader
        expected = {len(self.columns)}
        max_rows = self._limits.max_rows
        while not self._done and len(rows) < limit:
            start_line = reader.line_num
            want = limit - len(rows)
            raw: list[list[str]] = []
            failure: csv.Error | SourceError | None = None
            try:
                # On an error, extend() keeps the rows read before it.
                raw.extend(islice(reader, want))
            except (csv.Error, SourceError) as exc:
                failure = exc
            problem = None
            if (
                set(map(len, raw)) <= expected
                and self._count + len(raw) <= max_rows
                and not self._dropped
            ):
                good = raw
            else:
                good, problem = self._scan_slowly(raw, start_line, self._count)
            self._count += len(good)
            if problem is None and failure is not None:
                # A parse or encoding error after the rows read: it is in the next row.
                if isinstance(failure, csv.Error):
                    problem = self._csv_error(failure, self._count + 1)
                else:
                    problem = self._source_error(failure, self._count + 1)
            if problem is not None:
                self._problem, self._done = problem, True
            rows = rows + good if rows else good
            if len(raw) < want:
                self._done = True
            elif rows:
                break  # blank lines made it short: good enough, no need to read on
        if not rows and self._problem is not None:
            raise self._problem
        return rows

    def _scan_slowly(
        self, raw: list[list[str]], start_line: int, count: int
    ) -> tuple[list[list[str]], CsvDataError | None]:
        """Drop blank lines; stop at the first ragged row or row past the limit.

        Returns the good rows before the problem and the problem (or None).
        ``start_line`` is the reader's line count before ``raw[0]``; ``count``
        the data rows before it.
        """
        width = len(self.columns)
        widest = width + self._dropped
        max_rows = self._limits.max_rows
        good: list[list[str]] = []
        line = start_line
        for row in raw:
            row_line = line + 1
            line += 1 + line_breaks(row)
            if len(row) != width:
                if not row:
                    continue  # a blank line
                if not width < len(row) <= widest:
                    return good, self._ragged(row, count + 1, row_line)
                extra = next((i for i, value in enumerate(row[width:]) if value), None)
                if extra is not None:
                    return good, self._unnamed_value(count + 1, row_line, width + extra + 1)
                row = row[:width]
            count += 1
            if count > max_rows:
                return good, self._too_many_rows(count, row_line)
            good.append(row)
        return good, None

    def _read_header(self) -> list[str]:
        row_label = None if self._has_header else 1
        first: list[str] | None = None
        try:
            for row in self._reader:
                if row:  # blank lines come out as []
                    first = row
                    break
        except csv.Error as exc:
            raise self._csv_error(exc, row_label) from None
        except SourceError as exc:
            raise self._source_error(exc, row_label) from None
        what = "the header" if self._has_header else "the first row"
        if first is None:
            message = (
                "The file is empty; expected a header row."
                if self._has_header
                else "The file is empty; expected at least one row."
            )
            raise CsvDataError("empty_file", message)
        line = self._reader.line_num - line_breaks(first)
        if len(first) > self._limits.max_columns:
            raise CsvDataError(
                "too_many_columns",
                f"{what.capitalize()} has {len(first)} columns; "
                f"at most {self._limits.max_columns:,} are allowed.",
                row=row_label,
                column=self._limits.max_columns + 1,
                line=line,
            )
        self.header_as_read = first
        if not self._has_header:
            self._first_row = first
            return [f"column_{i}" for i in range(1, len(first) + 1)]
        return self._header_names(first, line)

    def _header_names(self, first: list[str], line: int) -> list[str]:
        """The column names of a header row, with three spreadsheet habits tolerated (and
        recorded in :attr:`warnings`): empty-named columns at the end are dropped (every
        value in them must be empty: read_rows checks), another empty name becomes
        ``column_N`` (R's row-name column, say), and a repeated name gets a suffix
        (``name_2``, ``name_3``...). A header with no name at all is an error."""
        if not any(name.strip() for name in first):
            raise CsvDataError(
                "empty_header",
                "The header has no column names; name the columns, or upload the file "
                "again with has_header=false.",
                column=1,
                line=line,
            )
        kept = len(first)
        while not first[kept - 1].strip():
            kept -= 1
        if kept < len(first):
            self._dropped = len(first) - kept
            self.warnings.append(
                {
                    "code": "empty_columns_dropped",
                    "message": f"The header ends with {self._dropped} column"
                    f"{'s' if self._dropped > 1 else ''} without a name and without "
                    "values; dropped.",
                    "columns": list(range(kept + 1, len(first) + 1)),
                }
            )
        first = list(first[:kept])
        unnamed = [column for column, name in enumerate(first, 1) if not name.strip()]
        for column in unnamed:
            first[column - 1] = f"column_{column}"
        if unnamed:
            listed = ", ".join(map(str, unnamed[:10])) + (" ..." if len(unnamed) > 10 else "")
            self.warnings.append(
                {
                    "code": "unnamed_columns",
                    "message": f"Header column{'s' if len(unnamed) > 1 else ''} {listed} "
                    f"{'have' if len(unnamed) > 1 else 'has'} no name; named column_N "
                    "(N: the column's position).",
                    "columns": unnamed,
                }
            )
        names: list[str] = []
        taken = set(first)
        first_seen: dict[str, int] = {}
        renamed: list[dict[str, object]] = []
        for column, name in enumerate(first, start=1):
            if name not in first_seen:
                first_seen[name] = column
                names.append(name)
                continue
            suffix = 2
            while f"{name}_{suffix}" in taken:
                suffix += 1
            unique = f"{name}_{suffix}"
            taken.add(unique)
            names.append(unique)
            renamed.append(
                {"column": column, "name": name, "renamed": unique, "same_as": first_seen[name]}
            )
        if renamed:
            described = "; ".join(
                f"column {r['column']} ({r['name']!r}, like column {r['same_as']}) "
                f"is now {r['renamed']!r}"
                for r in renamed[:10]
            )
            more = f" and {len(renamed) - 10} more" if len(renamed) > 10 else ""
            self.warnings.append(
                {
                    "code": "duplicate_header",
                    "message": f"Repeated header names made unique: {described}{more}.",
                    "columns": renamed,
                }
            )
        return names

    def _row_line(self, row: list[str]) -> int:
        """The line a just-parsed row starts on (the reader counts up to its end)."""
        return self._reader.line_num - line_breaks(row)

    def _ragged(self, row: list[str], number: int, line: int) -> CsvDataError:
        width = len(self.columns)
        like = "the header" if self._has_header else "the first row"
        return CsvDataError(
            "ragged_row",
            f"Row {number} (line {line}) has {len(row)} field{'' if len(row) == 1 else 's'}; "
            f"expected {width} like {like}.",
            row=number,
            column=min(len(row), width) + 1,
            line=line,
        )

    def _unnamed_value(self, number: int, line: int, column: int) -> CsvDataError:
        return CsvDataError(
            "value_in_unnamed_column",
            f"Row {number} (line {line}) has a value in column {column}, which has no name "
            "in the header. Name the column and upload the file again.",
            row=number,
            column=column,
            line=line,
        )

    def _too_many_rows(self, number: int, line: int) -> CsvDataError:
        return CsvDataError(
            "too_many_rows",
            f"The file has more than {self._limits.max_rows:,} rows, the most allowed "
            f"(row {number} is on line {line}).",
            row=number,
            line=line,
        )

    @staticmethod
    def _where(line: int, row: int | None) -> str:
        return f"line {line} (the header)" if row is None else f"line {line} (row {row})"

    def _csv_error(self, exc: csv.Error, row: int | None) -> CsvDataError:
        text = str(exc)
        line = self._reader.line_num
        if text.startswith("field larger than field limit"):
            return CsvDataError(
                "field_too_large",
                f"A value on {self._where(line, row)} is longer than "
                f"{self._limits.max_field_bytes:,} characters, the most allowed. "
                "If a quote is missing, a value may run on past its line.",
                row=row,
                line=line,
            )
        if text == "unexpected end of data":
            line = self._source.open_quote_line() or line
            return CsvDataError(
                "unterminated_quote",
                f"The quoted value starting on {self._where(line, row)} is never closed; "
                "the file ends inside it. Add the missing closing quote.",
                row=row,
                line=line,
            )
        if "expected after" in text:
            return CsvDataError(
                "bad_quote",
                f"On {self._where(line, row)}, a closing quote is followed by other text; "
                f"it must be followed by {_describe(self._delimiter)} or the end of the line. "
                'Write a quote inside a quoted value as two quotes ("").',
                row=row,
                line=line,
            )
        return CsvDataError(
            "malformed_csv",
            f"The CSV is malformed on {self._where(line, row)}: {text}.",
            row=row,
            line=line,
        )

    def _source_error(self, exc: SourceError, row: int | None) -> CsvDataError:
        line, offset = exc.line, exc.offset
        place = f"line {line}, in the header" if row is None else f"line {line}, row {row}"
        messages = {
            "invalid_utf8": f"Invalid UTF-8 at byte offset {offset} ({place}). "
            "Save the file as UTF-8, or upload it again with its encoding named "
            "(for example encoding=windows-1252).",
            "invalid_encoding": f"The bytes at byte offset {offset} ({place}) are not "
            f"valid {self._source.encoding}. Upload the file again with its encoding named "
            "(for example encoding=utf-8 or encoding=windows-1252).",
            "invalid_utf16": f"Invalid UTF-16 at byte offset {offset} ({place}).",
            "nul_byte": f"The file contains a NUL character at byte offset {offset} ({place}); "
            "it may be a binary file, or text in another encoding than UTF-8.",
            "line_too_long": f"Line {line} is longer than "
            f"{self._limits.max_line_chars:,} characters, the most allowed.",
            "stray_quote": f"A quote inside a value that is not quoted, in column {exc.column} "
            f"({place}, byte offset {offset}). Put the whole value in quotes and double "
            'the quote inside it ("").',
        }
        return CsvDataError(
            exc.code, messages[exc.code], row=row, column=exc.column, line=line, offset=offset
        )


def open_csv(
    chunks: Iterable[bytes],
    *,
    delimiter: str = ",",
    has_header: bool = True,
    limits: CsvLimits = DEFAULT_LIMITS,
    encoding: str | None = None,
) -> CsvStream:
    """Open a CSV file given as byte chunks; read its header (or first row) now.

    ``encoding`` is a canonical codec name (csvault.csvio.detect); None reads UTF-8, or
    UTF-16 after its byte order mark. Raises :class:`CsvDataError` for a bad delimiter,
    encoding or header, or a problem in the first row; later problems are raised by
    ``read_rows``.
    Sets :func:`csv.field_size_limit` (process-wide) to ``limits.max_field_bytes``.
    """
    return CsvStream(
        chunks, delimiter=delimiter, has_header=has_header, limits=limits, encoding=encoding
    )
