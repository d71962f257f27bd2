"""Bytes to physical lines: decoding, line ends, and the byte-level checks.

:class:`LineSource` pulls byte chunks lazily, decodes them (UTF-8, or UTF-16 with a byte
order mark) and cuts the text into the physical lines ``csv.reader`` wants. Problems
found here (invalid bytes, NUL, an overlong line, a stray quote) carry the exact byte
offset and are raised as :class:`SourceError` inside the feed of ``csv.reader``; the
reader turns them into :class:`CsvDataError` with the row number.
"""

from __future__ import annotations

import codecs
import io
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from csvault.csvio.errors import CsvDataError, SourceError
from csvault.csvio.limits import CsvLimits
from csvault.csvio.sniff import (
    UTF16_SNIFF_BYTES,
    UTF16_WITHOUT_BOM,
    bom_encoding,
    looks_like_utf16,
)

_Decoder = Callable[[bytes, str, bool], tuple[str, int]]
_DECODERS: dict[str, _Decoder] = {
    "utf-8": codecs.utf_8_decode,
    "utf-16-le": codecs.utf_16_le_decode,
    "utf-16-be": codecs.utf_16_be_decode,
    "utf-32-le": codecs.utf_32_le_decode,
    "utf-32-be": codecs.utf_32_be_decode,
}


def _decoder(encoding: str) -> _Decoder:
    """``(buffer, errors, final) -> (text, bytes used)`` for ``encoding``: the Unicode
    codecs' own functions, or a single-byte codec (which never holds a byte back)."""
    if encoding in _DECODERS:
        return _DECODERS[encoding]
    decode = codecs.lookup(encoding).decode

    def single_byte(buf: bytes, errors: str, final: bool) -> tuple[str, int]:
        return decode(buf, errors)

    return single_byte


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


def line_breaks(values: list[str]) -> int:
    """How many physical line ends lie inside the (quoted) values of a row."""
    return sum(v.count("\n") + v.count("\r") - v.count("\r\n") for v in values)


class LineSource:
    """Pull byte chunks lazily, decode them and cut the text into physical lines.

    ``batches()`` yields one list of complete lines per chunk (csv.reader wants
    one line per item, and ``itertools.chain`` flattens the lists at C speed).
    Decoding is done here rather than in a TextIOWrapper so that the byte
    offset of an invalid sequence or a NUL is exact: the absolute offset of
    every decoded buffer is known.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        limits: CsvLimits,
        delimiter: str = ",",
        encoding: str | None = None,
    ) -> None:
        self.bytes_consumed = 0
        self.lines_emitted = 0
        self._chunks = iter(chunks)
        self._max_line = limits.max_line_chars
        # The unfinished last line, in pieces (joined once it is complete, so a
        # line spread over many small chunks costs linear time).
        self._carry: list[str] = []
        self._carry_chars = 0
        self._error: SourceError | None = None
        # The most recent decoded text, as (line number of its first character,
        # text) pairs: enough to hold a maximal quoted value (twice the limit if
        # every character is a doubled quote), to find where an unclosed quote
        # opened. Whole chunk strings, not lines: keeping lines alive longer
        # than csv needs them costs more than everything else here.
        self._recent: deque[tuple[int, str]] = deque()
        self._recent_chars = 0
        self._recent_keep = 2 * limits.max_field_bytes + 2

        head = self._read_head()
        if encoding is not None:
            # Given (or detected before): a byte order mark of that encoding is dropped.
            found = bom_encoding(head)
            self.encoding = encoding
            skip = found[1] if found is not None and found[0] == encoding else 0
        elif (found := bom_encoding(head[:3])) is not None:
            # None given: the marks of UTF-8 and UTF-16 only (3 bytes: a UTF-32 mark is not
            # told apart, and UTF-32 LE's reads as UTF-16 LE's).
            self.encoding, skip = found
        elif looks_like_utf16(head):
            raise CsvDataError("utf16_without_bom", UTF16_WITHOUT_BOM)
        else:
            self.encoding, skip = "utf-8", 0
        self._decode = _decoder(self.encoding)
        # Stray-quote scan (UTF-8 and single-byte encodings, where a quote, the
        # delimiter and the line ends are single ASCII bytes): see _stray_quote.
        self._delimiter = delimiter
        self._quote_table = (
            _quote_class_table(delimiter)
            if self.encoding not in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
            and len(delimiter.encode()) == 1
            and ord(delimiter) < 128
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
            if size >= UTF16_SNIFF_BYTES:
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
        """Yield lists of complete lines; raise SourceError after the good lines."""
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
            code = (
                "invalid_utf8"
                if self.encoding == "utf-8"
                else "invalid_utf16"
                if self.encoding.startswith("utf-16")
                else "invalid_encoding"
            )
            return self._fail(lines, code, base + exc.start), exc.start
        if self._quote_table is not None:
            stray = self._stray_quote(buf, used)
            if stray is not None:
                position, column = stray
                lines = self._checked_lines(
                    buf[: max(position, 0)].decode(self.encoding), base, final=False
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
            encoding = self.encoding
            if line_start >= 0:
                prefix = buf[line_start + 1 : quote].decode(encoding)
            elif quote < 0:
                prefix = carried[:-1]
            elif carried.endswith("\r"):
                prefix = buf[:quote].decode(encoding)
            else:
                prefix = carried + buf[:quote].decode(encoding)
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
        self._error = SourceError(code, self.lines_emitted + 1, offset, column)
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
                    self._error = SourceError("line_too_long", self.lines_emitted + index + 1)
                    self._carry = []
                    self._carry_chars = 0
                    break
        self._check_carry(len(lines))
        self.lines_emitted += len(lines)
        return lines

    def _check_carry(self, complete: int) -> None:
        if self._error is None and self._carry_chars > self._max_line:
            self._error = SourceError("line_too_long", self.lines_emitted + complete + 1)

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
