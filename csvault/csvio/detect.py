"""Which encoding and which delimiter a CSV file uses, judged from a bounded sample.

The scan (csvault/pipeline/scan.py) calls these on the first :data:`SAMPLE_BYTES` of
the file; an ``encoding`` or ``delimiter`` given with the upload overrides them.

Encoding, in this order, never from the file name:

1. a byte order mark: UTF-32 LE/BE, UTF-8, UTF-16 LE/BE;
2. NULs in the pattern of UTF-32 or UTF-16 text without a byte order mark;
3. valid UTF-8 (plain ASCII included);
4. otherwise a legacy single-byte encoding chosen by ``charset-normalizer`` among
   :data:`LEGACY_CANDIDATES`; when Windows-1252 reads the sample as the same text as
   its choice, Windows-1252 (the usual one, and a superset of Latin-1's printable
   characters) is reported.

Delimiter: among ``,`` ``;`` TAB ``|``, the one that splits the sample's rows (read
with quotes, as csv reads them) into the same number of fields as the header, at
least two; see :func:`detect_delimiter`.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from csvault.csvio.errors import CsvDataError
from csvault.csvio.sniff import bom_encoding, looks_like_utf16, utf32_order

SAMPLE_BYTES = 64 * 1024
# Rows of the sample that the delimiter vote reads.
SAMPLE_ROWS = 200
DELIMITER_CANDIDATES = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}

# Unicode encodings by their canonical names; the others are single-byte.
UNICODE_ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
LEGACY_CANDIDATES = (
    "cp1252",
    "iso8859-15",
    "cp1250",
    "cp1251",
    "cp1253",
    "cp1254",
    "cp1257",
    "iso8859-2",
    "koi8-r",
)
ENCODING_HINT = "Use a name such as utf-8, utf-16, windows-1252 or latin-1."


@dataclass(frozen=True)
class Detected:
    """A file's format: given with the upload or detected here."""

    encoding: str
    encoding_detected: bool
    delimiter: str
    delimiter_detected: bool


@functools.lru_cache(maxsize=64)
def _single_byte(name: str) -> bool:
    """True for an ASCII-compatible charmap codec (cp1252, iso8859-x, koi8-r...), or
    Latin-1: one byte is one character, whatever came before, so any chunk decodes on
    its own. Stateful and escape codecs (iso2022, unicode-escape, idna...) are not."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        return False
    if info.name == "iso8859-1":
        return True
    module = sys.modules.get(type(getattr(info.decode, "__self__", None)).__module__)
    if module is None or getattr(module, "decoding_table", None) is None:
        return False
    try:
        return bytes(range(128)).decode(name) == "".join(map(chr, range(128)))
    except UnicodeDecodeError:
        return False


def encoding_option(name: str | None) -> str:
    """An ``encoding`` given with an upload, by its canonical name; ``""`` for detect.

    Accepts any name Python knows for UTF-8, UTF-16, UTF-32 (endianness from the byte
    order mark or the text when not named) or an ASCII-compatible single-byte encoding;
    :class:`CsvDataError` ``invalid_encoding`` otherwise.
    """
    text = (name or "").strip()
    if not text or text.lower() in ("detect", "auto"):
        return ""
    try:
        canonical = codecs.lookup(text).name
    except LookupError:
        raise CsvDataError(
            "invalid_encoding", f"Unknown encoding {text[:40]!r}. {ENCODING_HINT}"
        ) from None
    if canonical == "utf-8-sig":
        return "utf-8"
    if canonical in UNICODE_ENCODINGS or canonical in ("utf-16", "utf-32"):
        return canonical
    if _single_byte(canonical):
        return canonical
    raise CsvDataError(
        "invalid_encoding",
        f"The encoding {text[:40]!r} is not supported: csvault reads UTF-8, UTF-16, UTF-32 "
        "and single-byte encodings that keep ASCII as it is. " + ENCODING_HINT,
    )


def resolve_encoding(given: str, head: bytes) -> str:
    """The byte order of a given ``utf-16`` or ``utf-32`` (from the mark or the text)."""
    if given not in ("utf-16", "utf-32"):
        return given
    found = bom_encoding(head)
    if found is not None and found[0].startswith(given):
        return found[0]
    big = given == "utf-32" and utf32_order(head) == "be"
    big = big or (given == "utf-16" and _utf16_big_endian(head))
    return f"{given}-{'be' if big else 'le'}"


def _utf16_big_endian(head: bytes) -> bool:
    sample = head[: len(head) // 2 * 2]
    return sample[0::2].count(0) > sample[1::2].count(0)


def detect_encoding(head: bytes, *, final: bool) -> str:
    """The encoding of a file that starts with ``head`` (the whole file if ``final``)."""
    found = bom_encoding(head)
    if found is not None:
        return found[0]
    if b"\0" in head:
        order = utf32_order(head)
        if order is not None:
            return f"utf-32-{order}"
        if looks_like_utf16(head):
            return "utf-16-be" if _utf16_big_endian(head) else "utf-16-le"
    if is_utf8(head, final=final):
        return "utf-8"
    return legacy_encoding(head)


def is_utf8(data: bytes, *, final: bool) -> bool:
    """Valid UTF-8; unless ``final``, a character cut at the end of ``data`` is allowed."""
    if data.isascii():
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError:
        return False
    return True


def legacy_encoding(sample: bytes) -> str:
    """The single-byte encoding that reads ``sample`` best (never fails: Latin-1 reads
    every byte). Windows-1252 wins whenever charset-normalizer does not find another
    candidate clearly better (more coherent text, or a different text under it)."""
    from charset_normalizer import from_bytes  # imported here: costs ~0.1 s

    results = list(from_bytes(sample, cp_isolation=list(LEGACY_CANDIDATES)))
    western = next((r for r in results if codecs.lookup(r.encoding).name == "cp1252"), None)
    try:
        as_cp1252: str | None = sample.decode("cp1252")
    except UnicodeDecodeError:
        as_cp1252 = None
    if not results:
        return "cp1252" if as_cp1252 is not None else "iso8859-1"
    best = results[0]
    choice = codecs.lookup(best.encoding).name
    if as_cp1252 is not None and (
        sample.decode(choice, errors="replace") == as_cp1252
        or (
            western is not None
            and western.chaos <= best.chaos
            and western.coherence >= best.coherence
        )
    ):
        return "cp1252"
    return choice


def _sample_rows(text: str, delimiter: str) -> list[int]:
    """Field counts of the sample's non-blank rows (the last, maybe cut, row dropped)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    widths: list[int] = []
    try:
        for row in reader:
            if row:
                widths.append(len(row))
            if len(widths) > SAMPLE_ROWS:
                break
    except csv.Error:
        pass  # an overlong or odd value: judge the rows before it
    return widths


def delimiter_scores(text: str, *, final: bool) -> dict[str, tuple[float, int]]:
    """For each candidate with a header of two fields or more: (share of rows as wide
    as the header, header width)."""
    if not final:
        cut = max(text.rfind("\n"), text.rfind("\r"))
        text = text[: cut + 1] if cut >= 0 else text
    scores: dict[str, tuple[float, int]] = {}
    for candidate in DELIMITER_CANDIDATES:
        widths = _sample_rows(text, candidate)
        if not final and len(widths) > 1:
            widths = widths[:-1]  # may be cut by the end of the sample
        widths = widths[:SAMPLE_ROWS]
        if not widths or widths[0] < 2:
            continue
        share = sum(1 for w in widths if w == widths[0]) / len(widths)
        scores[candidate] = (share, widths[0])
    return scores


def detect_delimiter(text: str, *, final: bool) -> str | None:
    """The candidate whose rows are most often as wide as the header (then: the widest
    header, then the order ``,`` ``;`` TAB ``|``); None when none splits the header."""
    scores = delimiter_scores(text, final=final)
    if not scores:
        return None
    return max(scores, key=lambda c: (scores[c], -DELIMITER_CANDIDATES.index(c)))


def consistent_delimiter(text: str, *, final: bool, used: str) -> str | None:
    """Another candidate under which every sample row is as wide as the header (at least
    two fields): the hint for a ragged-row error."""
    scores = delimiter_scores(text, final=final)
    for candidate, (share, _) in sorted(scores.items(), key=lambda item: -item[1][1]):
        if candidate != used and share == 1.0:
            return candidate
    return None


def delimiter_option(value: str | None) -> str:
    """An upload's ``delimiter``: ``""`` for detect (empty, ``detect`` or ``auto``); a Tab
    for ``\\t``, ``tab`` or a Tab character; otherwise the value itself (csvio's
    check_delimiter decides whether it may be one)."""
    if value is None or value == "":
        return ""
    lowered = value.strip().lower() if value.strip() else value
    if lowered in ("detect", "auto"):
        return ""
    if lowered in ("\\t", "tab", "\t"):
        return "\t"
    return value


def decode_sample(head: bytes, encoding: str) -> str:
    """The text of a sample in ``encoding``: the byte order mark dropped, a character
    cut at the end ignored, undecodable bytes replaced (it only feeds the votes)."""
    found = bom_encoding(head)
    if found is not None and found[0] == encoding:
        head = head[found[1] :]
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    return decoder.decode(head, final=False)


def detect(head: bytes, *, final: bool, encoding: str = "", delimiter: str = "") -> Detected:
    """The format of a file starting with ``head``: given values kept, the rest detected."""
    chosen = resolve_encoding(encoding, head) if encoding else detect_encoding(head, final=final)
    if delimiter:
        return Detected(chosen, not encoding, delimiter, False)
    found = detect_delimiter(decode_sample(head, chosen), final=final)
    return Detected(chosen, not encoding, found or ",", True)


class Probe:
    """Watch a file stream by (the scan's pass over the raw bytes) and tell its format.

    Keeps the first :data:`SAMPLE_BYTES`; when the encoding is to be detected and the
    start is UTF-8, checks that the rest is UTF-8 too (ASCII chunks cost a memchr-speed
    test) and keeps the bytes around the first invalid sequence for the legacy
    detector. Memory: two samples.
    """

    def __init__(self, *, encoding: str = "", delimiter: str = "") -> None:
        self._encoding = encoding
        self._delimiter = delimiter
        self._head = bytearray()
        self._size = 0
        self._utf8 = codecs.getincrementaldecoder("utf-8")() if not encoding else None
        self._invalid: bytes | None = None
        # Multi-byte UTF-8 seen before any invalid byte: then the file is UTF-8 with an
        # error in it (the ingest names its offset), not another encoding.
        self._utf8_text = False

    def watch(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Yield ``chunks`` unchanged, looking at each."""
        for chunk in chunks:
            if len(self._head) < SAMPLE_BYTES:
                self._head += chunk[: SAMPLE_BYTES - len(self._head)]
            self._size += len(chunk)
            if self._utf8 is not None and self._invalid is None:
                self._check_utf8(chunk)
            yield chunk

    def _check_utf8(self, chunk: bytes) -> None:
        assert self._utf8 is not None
        if chunk.isascii() and not self._utf8.getstate()[0]:
            return
        try:
            self._utf8.decode(chunk)
            self._utf8_text = True
        except UnicodeDecodeError as exc:
            if self._utf8_text or not chunk[: exc.start].isascii():
                self._utf8 = None  # UTF-8 with a bad byte: stop checking
                return
            start = max(0, exc.start - SAMPLE_BYTES // 2)
            self._invalid = bytes(chunk[start : start + SAMPLE_BYTES])

    def result(self) -> Detected:
        """The format, once the whole file went by."""
        head = bytes(self._head)
        final = self._size <= len(head)
        found = detect(head, final=final, encoding=self._encoding, delimiter=self._delimiter)
        if (
            found.encoding_detected
            and found.encoding == "utf-8"
            and self._invalid is not None
            and bom_encoding(head) is None
        ):
            # UTF-8 at the start only: judge the legacy encoding where the file is not.
            legacy = legacy_encoding(self._invalid)
            delimiter = found.delimiter
            if found.delimiter_detected:
                text = decode_sample(head, legacy)
                delimiter = detect_delimiter(text, final=final) or ","
            return Detected(legacy, True, delimiter, found.delimiter_detected)
        return found
