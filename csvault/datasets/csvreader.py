"""Stream an uploaded CSV file row by row, in constant memory, and validate it.

``open_csv(chunks)`` takes the file as an iterable of byte chunks of any size
(for example 64 KiB pieces from the decrypting reader), reads the header at
once and returns a :class:`CsvStream`; iterating the stream yields each data
row as a ``list[str]``, and ``stream.batches(n)`` yields the same rows in lists
of up to ``n`` (the fast path of the ingest). The first problem found raises
:class:`CsvDataError`, which says what is wrong and where (row, column,
physical line, byte offset).

Format rules (the documented behaviour the rest of csvault relies on):

* Encoding: UTF-8, strictly; a UTF-8 byte order mark is dropped. A file that
  starts with a UTF-16 LE/BE byte order mark is read as UTF-16. A file that
  looks like UTF-16 without a byte order mark is refused. Any NUL character is
  refused.
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
* Header: the first non-blank row. Its names must be non-blank and unique
  (compared exactly); they are kept exactly. A header-only file has no rows.
  With ``has_header=False`` the columns are named ``column_1`` ... and the
  first row is data row 1.
* Every data row must have as many fields as the header.

Numbering in errors: ``row`` is the 1-based data row (1 = the first row after
the header; blank lines are not counted) and is ``None`` for problems in the
header itself; ``line`` is the 1-based physical line (CR, LF and CRLF each end
one) where the row starts, or where the problem is when that is more precise;
``column`` is 1-based; ``offset`` is the 0-based byte offset in the raw input,
byte order mark included.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

__all__ = ["DEFAULT_LIMITS", "CsvDataError", "CsvLimits", "CsvStream", "open_csv"]


@dataclass(frozen=True)
class CsvLimits:
    """Upper bounds that keep a hostile or broken file from exhausting the worker.

    ``max_field_bytes`` is applied as :func:`csv.field_size_limit`, which counts
    characters. ``max_line_chars`` bounds one physical line (the reader holds at
    most one line, plus one chunk, in memory); it should stay well above
    ``max_field_bytes``, or long single-line values are reported as
    ``line_too_long`` rather than ``field_too_large``.
    """

    max_columns: int = 1000
    max_field_bytes: int = 1_048_576
    max_rows: int = 100_000_000
    max_line_chars: int = 16 * 1_048_576


DEFAULT_LIMITS = CsvLimits()


class CsvDataError(Exception):
    """The file is not acceptable CSV; says what is wrong and where.

    ``code`` is machine-readable; ``message`` is a sentence a person can act
    on. ``row``, ``column``, ``line`` and ``offset`` locate the problem as far
    as it is known (see the module docstring for their numbering) and are
    ``None`` otherwise.
    """

    def __init__(
        self,
        code: str,
        message: str,
        row: int | None = None,
        column: int | None = None,
        line: int | None = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.row = row
        self.column = column
        self.line = line
        self.offset = offset

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickling replays ``self.args`` (the message only); keep every field.
        return (
            type(self),
            (self.code, self.message, self.row, self.column, self.line, self.offset),
        )

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, Any]:
        """All six fields, ``None`` included, for storing or returning as JSON."""
        return {
            "code": self.code,
            "message": self.message,
            "row": self.row,
            "column": self.column,
            "line": self.line,
            "offset": self.offset,
        }


class _SourceError(Exception):
    """A byte- or line-level problem, raised inside the feed of ``csv.reader``.

    It travels through the C reader (which passes on exceptions from its input)
    to the row loop, which knows the row number and turns it into a
    :class:`CsvDataError`.
    """

    def __init__(
        self, code: str, line: int, offset: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(code)
        self.code = code
        self.line = line
        self.offset = offset
        self.column = column


_Decoder = Callable[[bytes, str, bool], tuple[str, int]]
_DECODERS: dict[str, _Decoder] = {
    "utf-8": codecs.utf_8_decode,
    "utf-16-le": codecs.utf_16_le_decode,
    "utf-16-be": codecs.utf_16_be_decode,
}
# Bytes looked at before deciding the encoding.
_SNIFF_BYTES = 64
# Decoded texts shorter than this are merged in the window of recent text.
_SMALL_TEXT = 8192
# Characters str.splitlines() breaks on but csv does not treat as line ends;
# the few chunks that contain one are split the slow, exact way.
_ASCII_EXTRA_BREAKS = ("\v", "\f", "\x1c", "\x1d", "\x1e")
_EXTRA_BREAKS = (*_ASCII_EXTRA_BREAKS, "\x85", "\u2028", "\u2029")
_QUOTE_RUN = re.compile('"+')


def _quote_class_table(delimiter: str) -> bytes:
    """bytes.translate table: quote, delimiter, CR and LF stay; every other byte is ``x``."""
    keep = {ord('"'), ord("\r"), ord("\n")}
    if len(delimiter.encode()) == 1:
        keep.add(ord(delimiter))
    return bytes(b if b in keep else ord("x") for b in range(256))


def _unquoted_field_at_end(prefix: str, delimiter: str) -> int | None:
    """The 1-based field index if the end of ``prefix`` (a line up to a quote) lies in
    an unquoted field; None if it lies in or right after a quoted one (csv judges those).
    """
    i, n, column = 0, len(prefix), 1
    while True:
        if i < n and prefix[i] == '"':
            i += 1
            while True:
                j = prefix.find('"', i)
                if j < 0:
                    return None  # still inside the quoted value
                if j + 1 < n and prefix[j + 1] == '"':
                    i = j + 2
                    continue
                i = j + 1
                break
            if i >= n or prefix[i] != delimiter:
                return None  # text after a closing quote: csv reports it
            i += 1
            column += 1
            continue
        j = prefix.find(delimiter, i)
        if j < 0:
            return column
        i = j + 1
        column += 1


def _split_lines(text: str) -> list[str]:
    """Split on CR, LF and CRLF only, keeping the line ends (as csv needs)."""
    extra = _ASCII_EXTRA_BREAKS if text.isascii() else _EXTRA_BREAKS
    for char in extra:
        if char in text:
            return io.StringIO(text, newline="").readlines()
    return text.splitlines(keepends=True)


def _line_breaks(values: list[str]) -> int:
    """How many physical line ends lie inside the (quoted) values of a row."""
    return sum(v.count("\n") + v.count("\r") - v.count("\r\n") for v in values)


def _looks_like_utf16(head: bytes) -> bool:
    """True when NULs sit in every other byte, as in BOM-less UTF-16 text."""
    sample = head[:_SNIFF_BYTES]
    pairs = len(sample) // 2
    if not pairs or b"\0" not in sample:
        return False
    little = sum(1 for i in range(0, 2 * pairs, 2) if sample[i] and not sample[i + 1])
    big = sum(1 for i in range(0, 2 * pairs, 2) if not sample[i] and sample[i + 1])
    return 2 * max(little, big) >= pairs


class _LineSource:
    """Pull byte chunks lazily, decode them and cut the text into physical lines.

    ``batches()`` yields one list of complete lines per chunk (csv.reader wants
    one line per item, and ``itertools.chain`` flattens the lists at C speed).
    Decoding is done here rather than in a TextIOWrapper so that the byte
    offset of an invalid sequence or a NUL is exact: the absolute offset of
    every decoded buffer is known.
    """

    def __init__(self, chunks: Iterable[bytes], limits: CsvLimits, delimiter: str = ",") -> None:
        self.bytes_consumed = 0
        self.lines_emitted = 0
        self._chunks = iter(chunks)
        self._max_line = limits.max_line_chars
        # The unfinished last line, in pieces (joined once it is complete, so a
        # line spread over many small chunks costs linear time).
        self._carry: list[str] = []
        self._carry_chars = 0
        self._error: _SourceError | None = None
        # The most recent decoded text, as (line number of its first character,
        # text) pairs: enough to hold a maximal quoted value (twice the limit if
        # every character is a doubled quote), to find where an unclosed quote
        # opened. Whole chunk strings, not lines: keeping lines alive longer
        # than csv needs them costs more than everything else here.
        self._recent: deque[tuple[int, str]] = deque()
        self._recent_chars = 0
        self._recent_keep = 2 * limits.max_field_bytes + 2

        head = self._read_head()
        if head.startswith(codecs.BOM_UTF8):
            self.encoding, skip = "utf-8", len(codecs.BOM_UTF8)
        elif head.startswith(codecs.BOM_UTF16_LE):
            self.encoding, skip = "utf-16-le", len(codecs.BOM_UTF16_LE)
        elif head.startswith(codecs.BOM_UTF16_BE):
            self.encoding, skip = "utf-16-be", len(codecs.BOM_UTF16_BE)
        elif _looks_like_utf16(head):
            raise CsvDataError(
                "utf16_without_bom",
                "The file looks like UTF-16 text without a byte order mark. "
                "Save it as UTF-8 (or UTF-16 with a byte order mark) and upload it again.",
            )
        else:
            self.encoding, skip = "utf-8", 0
        self._decode = _DECODERS[self.encoding]
        # Stray-quote scan (UTF-8 only): see _stray_quote.
        self._delimiter = delimiter
        self._quote_table = (
            _quote_class_table(delimiter)
            if self.encoding == "utf-8" and len(delimiter.encode()) == 1
            else None
        )
        self._quote_tail = b""
        self._head = head[skip:]
        self._start = skip

    def _read_head(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        for chunk in self._chunks:
            parts.append(bytes(chunk))
            size += len(parts[-1])
            self.bytes_consumed = size
            if size >= _SNIFF_BYTES:
                break
        return b"".join(parts)

    def _pull(self) -> Iterator[bytes]:
        yield self._head
        for chunk in self._chunks:
            # bytes() only for other buffer types: slicing and concatenation
            # below need real bytes (and len() must count bytes).
            data = chunk if type(chunk) is bytes else bytes(chunk)
            self.bytes_consumed += len(data)
            yield data

    def batches(self) -> Iterator[list[str]]:
        """Yield lists of complete lines; raise _SourceError after the good lines."""
        pending = b""  # an incomplete character left over from the previous chunk
        base = self._start  # absolute byte offset of the next buffer to decode
        for chunk in self._pull():
            buf = pending + chunk if pending else chunk
            lines, used = self._decode_lines(buf, base, final=False)
            if lines:
                yield lines
            if self._error is not None:
                raise self._error
            pending = buf[used:]
            base += used
        lines, _ = self._decode_lines(pending, base, final=True)
        if lines:
            yield lines
        if self._error is not None:
            raise self._error

    def _decode_lines(self, buf: bytes, base: int, *, final: bool) -> tuple[list[str], int]:
        """Decode ``buf`` (starting at absolute offset ``base``) into complete lines.

        Returns the lines and how many bytes were used; on invalid bytes returns
        the lines before them and sets ``_error``.
        """
        try:
            text, used = self._decode(buf, "strict", final)
        except UnicodeDecodeError as exc:
            text, _ = self._decode(buf[: exc.start], "strict", False)
            lines = self._checked_lines(text, base, final=False)
            code = "invalid_utf8" if self.encoding == "utf-8" else "invalid_utf16"
            return self._fail(lines, code, base + exc.start), exc.start
        if self._quote_table is not None:
            stray = self._stray_quote(buf, used)
            if stray is not None:
                position, column = stray
                lines = self._checked_lines(
                    buf[: max(position, 0)].decode("utf-8"), base, final=False
                )
                return self._fail(lines, "stray_quote", base + position, column=column), used
        return self._checked_lines(text, base, final=final), used

    def _stray_quote(self, buf: bytes, used: int) -> tuple[int, int] | None:
        """(index in ``buf``, column) of a quote inside an unquoted value, or None.

        In valid CSV a quote never stands between two characters that are neither
        a quote, the delimiter nor a line end: an opening quote follows a
        delimiter or a line start, a closing one precedes a delimiter or a line
        end, and a doubled one touches its twin. So one ``bytes.translate`` to
        character classes and one substring search find every candidate at
        memchr speed; each is then judged on its line (a quote right after a
        quoted value is csv's ``bad_quote`` to report, not this).
        """
        assert self._quote_table is not None
        if b'"' not in self._quote_tail and buf.find(b'"', 0, used) < 0:
            # memchr: files without quotes pay nothing more
            self._quote_tail = (
                self._quote_tail + buf[max(used - 2, 0) : used].translate(self._quote_table)
            )[-2:]
            return None
        mapped = buf[:used].translate(self._quote_table)
        tail = self._quote_tail
        hay = tail + mapped if tail else mapped
        # Only the first candidate of a buffer is judged: judging costs a look at
        # its whole line, and a crafted line full of candidates must not make that
        # quadratic. Every candidate is an error either way (stray, or text after
        # a closing quote, which csv reports when it gets there).
        k = hay.find(b'x"x')
        if k >= 0:
            quote = k + 1 - len(tail)  # -1: the last byte of the previous buffer
            carried = "".join(self._carry)
            line_start = max(buf.rfind(b"\n", 0, max(quote, 0)), buf.rfind(b"\r", 0, max(quote, 0)))
            if line_start >= 0:
                prefix = buf[line_start + 1 : quote].decode("utf-8")
            elif quote < 0:
                prefix = carried[:-1]
            elif carried.endswith("\r"):
                prefix = buf[:quote].decode("utf-8")
            else:
                prefix = carried + buf[:quote].decode("utf-8")
            column = _unquoted_field_at_end(prefix, self._delimiter)
            if column is not None:
                return quote, column
        self._quote_tail = hay[-2:]
        return None

    def _checked_lines(self, text: str, base: int, *, final: bool) -> list[str]:
        # str.find is a memchr-speed scan; NUL is rare, so locate it only when present.
        nul = text.find("\0")
        if nul < 0:
            self._remember(text)
            return self._lines(text, final=final)
        before = text[:nul]
        lines = self._lines(before, final=False)
        return self._fail(lines, "nul_byte", base + len(before.encode(self.encoding)))

    def _fail(
        self, lines: list[str], code: str, offset: int, *, column: int | None = None
    ) -> list[str]:
        """Record a bad character found right after ``lines`` (unless a problem came first)."""
        if self._error is not None:
            return lines
        if self._carry and self._carry[-1].endswith("\r"):
            # The CR that was held back in case an LF followed ended its line:
            # hand that line over, so the row count includes it.
            ended = ["".join(self._carry)]
            self._carry = []
            self._carry_chars = 0
            self.lines_emitted += 1
            lines = lines + ended
        self._error = _SourceError(code, self.lines_emitted + 1, offset, column)
        return lines

    def _lines(self, text: str, *, final: bool) -> list[str]:
        """Append ``text`` to the unfinished line and return the lines now complete."""
        carry = self._carry
        if not text and (not final or not carry):
            return []
        lines = _split_lines(text) if text else []
        carried = self._carry_chars
        if carry:
            if carry[-1].endswith("\r"):
                # A CR at the end of the last chunk: CRLF if this text starts with LF.
                joined = "".join(carry)
                if lines and lines[0] == "\n":
                    lines[0] = joined + "\n"
                else:
                    lines.insert(0, joined)
            elif not lines:
                lines = ["".join(carry)]
            elif len(lines) == 1 and not final and not lines[0].endswith("\n"):
                # Still the same line: keep collecting its pieces.
                carry.append(lines[0])
                self._carry_chars += len(lines[0])
                self._check_carry(0)
                return []
            else:
                lines[0] = "".join(carry) + lines[0]
            self._carry = []
            self._carry_chars = 0
        if not final and not lines[-1].endswith("\n"):
            # Unfinished, or a CR that may be the first half of a CRLF.
            last = lines.pop()
            self._carry = [last]
            self._carry_chars = len(last)
        if len(text) + carried > self._max_line:
            # Only then can a complete line be too long; cheap to skip otherwise.
            for index, line in enumerate(lines):
                if len(line) > self._max_line:
                    del lines[index:]
                    self._error = _SourceError("line_too_long", self.lines_emitted + index + 1)
                    self._carry = []
                    self._carry_chars = 0
                    break
        self._check_carry(len(lines))
        self.lines_emitted += len(lines)
        return lines

    def _check_carry(self, complete: int) -> None:
        if self._error is None and self._carry_chars > self._max_line:
            self._error = _SourceError("line_too_long", self.lines_emitted + complete + 1)

    def _remember(self, text: str) -> None:
        carry = self._carry
        # After a held-back CR, the text starts a new line unless it starts with LF.
        new_line = bool(carry) and carry[-1].endswith("\r") and not text.startswith("\n")
        recent = self._recent
        if recent and len(recent[-1][1]) < _SMALL_TEXT:
            # Tiny chunks: merge them, so that the window stays a few objects.
            recent[-1] = (recent[-1][0], recent[-1][1] + text)
        else:
            recent.append((self.lines_emitted + 1 + new_line, text))
        self._recent_chars += len(text)
        while self._recent_chars - len(recent[0][1]) >= self._recent_keep:
            self._recent_chars -= len(recent.popleft()[1])

    def open_quote_line(self) -> int | None:
        """At end of input inside a quoted value: the line where that quote opened.

        csv stops a quoted value at ``max_field_bytes`` characters, so the
        opening quote lies within the remembered text (at most twice as many).
        Inside the value every quote is doubled, so the last run of an odd
        number of quotes is the opening quote (plus any doubled quotes after it).
        """
        if not self._recent:
            return None
        first_line = self._recent[0][0]
        text = "".join(chunk for _, chunk in self._recent)
        opening = None
        for run in _QUOTE_RUN.finditer(text):
            if len(run.group()) % 2:
                opening = run.start()
        if opening is None:
            return None
        before = text[:opening]
        return first_line + before.count("\n") + before.count("\r") - before.count("\r\n")


def _check_delimiter(delimiter: object) -> None:
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n\0':
        raise CsvDataError(
            "invalid_delimiter",
            "The delimiter must be a single character other than a double quote, "
            f"CR, LF or NUL; got {delimiter!r}.",
        )


def _describe(char: str) -> str:
    names = {"\t": "a tab", " ": "a space", ",": "a comma", ";": "a semicolon", "|": "a pipe"}
    return names.get(char, repr(char))


class CsvStream:
    """An open CSV file: ``columns`` at once, then the data rows on iteration.

    Create it with :func:`open_csv`. Iteration is single-pass: it consumes the
    chunk iterable as it goes and yields ``list[str]`` rows in file order (the
    caller counts them: the first is row 1). ``bytes_consumed`` tells how many
    raw bytes have been pulled from the input so far (it may run up to one
    chunk ahead of the rows yielded), for progress reports.
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
    ) -> None:
        _check_delimiter(delimiter)
        self._limits = limits
        self._has_header = has_header
        self._delimiter = delimiter
        self._source = _LineSource(chunks, limits, delimiter)
        self.encoding = self._source.encoding
        # Process-global; the C reader reads it as it parses, so set it per open.
        csv.field_size_limit(limits.max_field_bytes)
        self._reader = csv.reader(
            itertools.chain.from_iterable(self._source.batches()),
            delimiter=delimiter,
            strict=True,
        )
        self._first_row: list[str] | None = None
        self.columns = self._read_header()
        self._rows = self._iterate()
        self._consumer: str | None = None
        # State of read_rows(): data rows returned, the problem that ended the
        # file (raised once the rows before it are returned), whether it ended.
        self._count = 0
        self._problem: CsvDataError | None = None
        self._done = False

    @property
    def bytes_consumed(self) -> int:
        """Raw input bytes pulled from the chunk iterable so far."""
        return self._source.bytes_consumed

    def __iter__(self) -> Iterator[list[str]]:
        self._consume("iteration")
        return self._rows

    def _consume(self, how: str) -> None:
        if self._consumer not in (None, how):
            raise RuntimeError(f"this CSV stream is already being read by {self._consumer}")
        self._consumer = how

    def batches(self, size: int) -> Iterator[list[list[str]]]:
        """Yield the data rows in file order, in lists of at most ``size`` rows.

        The same rows and the same errors as iterating the stream (use one or the
        other): rows before a problem are yielded, then :class:`CsvDataError` is
        raised. Blank lines are dropped, so a list may be shorter than ``size``;
        none is empty. See :meth:`read_rows`, which this calls.
        """
        while rows := self.read_rows(size):
            yield rows

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
        self._consume("batches")
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
            failure: csv.Error | _SourceError | None = None
            try:
                # On an error, extend() keeps the rows read before it.
                raw.extend(islice(reader, want))
            except (csv.Error, _SourceError) as exc:
                failure = exc
            problem = None
            if set(map(len, raw)) <= expected and self._count + len(raw) <= max_rows:
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
        max_rows = self._limits.max_rows
        good: list[list[str]] = []
        line = start_line
        for row in raw:
            row_line = line + 1
            line += 1 + _line_breaks(row)
            if len(row) != width:
                if not row:
                    continue  # a blank line
                return good, self._ragged(row, count + 1, row_line)
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
        except _SourceError as exc:
            raise self._source_error(exc, row_label) from None
        what = "the header" if self._has_header else "the first row"
        if first is None:
            message = (
                "The file is empty; expected a header row."
                if self._has_header
                else "The file is empty; expected at least one row."
            )
            raise CsvDataError("empty_file", message)
        line = self._reader.line_num - _line_breaks(first)
        if len(first) > self._limits.max_columns:
            raise CsvDataError(
                "too_many_columns",
                f"{what.capitalize()} has {len(first)} columns; "
                f"at most {self._limits.max_columns:,} are allowed.",
                row=row_label,
                column=self._limits.max_columns + 1,
                line=line,
            )
        if not self._has_header:
            self._first_row = first
            return [f"column_{i}" for i in range(1, len(first) + 1)]
        seen: dict[str, int] = {}
        for column, name in enumerate(first, start=1):
            if not name.strip():
                raise CsvDataError(
                    "empty_header",
                    f"Column {column} of the header is empty.",
                    column=column,
                    line=line,
                )
            if name in seen:
                raise CsvDataError(
                    "duplicate_header",
                    # The name itself stays out: errors are stored in clear, the
                    # header only encrypted.
                    f"Columns {seen[name]} and {column} of the header have the same name; "
                    "header names must be unique.",
                    column=column,
                    line=line,
                )
            seen[name] = column
        return first

    def _iterate(self) -> Iterator[list[str]]:
        # The hot loop: one length check and one count per row, locals only.
        reader = self._reader
        width = len(self.columns)
        max_rows = self._limits.max_rows
        count = 0
        try:
            if self._first_row is not None:
                first, self._first_row = self._first_row, None
                count = 1
                if count > max_rows:
                    raise self._too_many_rows(count, self._row_line(first))
                yield first
            for row in reader:
                if len(row) != width:
                    if not row:
                        continue  # a blank line
                    raise self._ragged(row, count + 1, self._row_line(row))
                count += 1
                if count > max_rows:
                    raise self._too_many_rows(count, self._row_line(row))
                yield row
        except csv.Error as exc:
            raise self._csv_error(exc, count + 1) from None
        except _SourceError as exc:
            raise self._source_error(exc, count + 1) from None

    def _row_line(self, row: list[str]) -> int:
        """The line a just-parsed row starts on (the reader counts up to its end)."""
        return self._reader.line_num - _line_breaks(row)

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

    def _source_error(self, exc: _SourceError, row: int | None) -> CsvDataError:
        line, offset = exc.line, exc.offset
        place = f"line {line}, in the header" if row is None else f"line {line}, row {row}"
        messages = {
            "invalid_utf8": f"Invalid UTF-8 at byte offset {offset} ({place}). "
            "Save the file as UTF-8 and upload it again.",
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
) -> CsvStream:
    """Open a CSV file given as byte chunks; read its header (or first row) now.

    Raises :class:`CsvDataError` for a bad delimiter, encoding or header, or a
    problem in the first row; later problems are raised while iterating.
    Sets :func:`csv.field_size_limit` (process-wide) to ``limits.max_field_bytes``.
    """
    return CsvStream(chunks, delimiter=delimiter, has_header=has_header, limits=limits)
