"""A per-column profile of a CSV file, computed while the ingest reads it.

:class:`Profiler` takes the rows as the ingest has them: grid block plaintexts from
the C fast path (:meth:`Profiler.feed_blocks`) or rows of ``str`` from the reference
reader (:meth:`Profiler.feed_rows`), in any mix, in file order. It runs in C
(``Profile`` in ``csvault.csvio._csvblocks``, csvault/csvio/_profile.c, with the GIL
released over blocks) when the extension is built, else in Python (:class:`_PyProfile`);
both give exactly the same result (tests/csvio/test_profile.py compares them).
:meth:`Profiler.result` gives one JSON-ready dict per column::

    {"name", "type", "count", "nulls", "min", "max", "distinct", "distinct_exact", "examples"}

The rules:

- **Nulls.** An empty value is null. The missing-value tokens ``NA``, ``N/A``,
  ``null``, ``NULL``, ``NaN`` and ``-`` (exact, case-sensitive) are null only when the
  column has at least one other non-empty value and all its other non-empty values are
  numbers; otherwise they are ordinary text values. ``count`` is the number of non-null
  values, ``nulls`` the rest: ``count + nulls`` is the number of rows fed.
- **integer**: ``[+-]?[0-9]{1,18}`` (always an int64).
- **number**: an integer, ``[+-]?[0-9]{19,}``,
  ``[+-]?([0-9]+\\.[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]+)?`` or ``[+-]?[0-9]+[eE][+-]?[0-9]+``;
  with ``decimal_comma`` also ``[+-]?[0-9]+,[0-9]+`` (the comma read as the decimal
  point). Its double must be finite (``1e999`` is text, ``1e-999`` is 0.0). No spaces,
  thousands separators, ``inf`` or ``nan``.
- **boolean**: ``true``, ``false``, ``yes``, ``no``, in any letter case.
- **date**: ``YYYY-MM-DD``, a real calendar date (Gregorian leap years), year
  0001-9999. **datetime**: a date, ``T`` or a space, ``HH:MM``, optionally ``:SS``
  and then optionally ``.`` and 1-9 digits, then optionally ``Z`` or ``[+-]HH:MM``;
  hours 00-23, minutes and seconds 00-59 (in the offset too).
- **The type** of a column is the first of integer, number, boolean, date, datetime
  that all its non-null values satisfy (an integer is a number, a date is a
  datetime), else text; a column without non-null values is text.
- **min / max**: an int for integer columns, a float for number columns (every value
  converted by a correctly rounded conversion: C's ``strtod``, Python's ``float``), the
  text for date and datetime columns (code point order, which is UTF-8 byte order);
  None for the other types and when ``count`` is 0. On a tie the first value seen
  stays (``0.0`` before ``-0.0`` gives 0.0).
- **distinct**: the number of distinct non-null values, as the number of distinct
  64-bit hashes of their UTF-8 (:func:`_hash64`). Exact (``distinct_exact``) up to
  ``max(256, min(10_000, 1_000_000 // width))`` per column; past that bound the hashes
  fill a HyperLogLog of 4096 one-byte registers (p = 12, standard error about 1.6 %)
  and the estimate has the standard small-range correction (linear counting while it
  is at most 2.5 * 4096 and a register is still 0). Missing-value tokens are kept out
  of it: those that are text values add the number of distinct ones seen.
- **examples**: the first 5 distinct non-null values, in order of first appearance,
  each cut to its first 64 code points (distinct as whole values).

The hash of a value's UTF-8 bytes: ``h = 0xcbf29ce484222325``; for each 8-byte
little-endian word (the last one padded with zero bytes), ``h = (h ^ word) *
0x9e3779b97f4a7c15 mod 2**64`` then ``h ^= h >> 32``; finally murmur3's fmix64 of
``h ^ length``. It takes 8 bytes per multiplication, and values of at most 8 bytes and
equal length never collide. A HyperLogLog register is the top 12 bits of the hash,
its value the position of the first 1 bit in the other 52 (53 if none).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from typing import Any, Protocol

from csvault.csvio.blocks import GRID_FORMAT, block_rows

__all__ = ["C_AVAILABLE", "Profiler", "c_profiler", "distinct_bound", "py_profiler"]

try:  # the extension fastcsv.py loads (or its sanitizer build), when there is one
    from csvault.csvio.fastcsv import _csvblocks as _native
except ImportError:  # pragma: no cover - an unloadable CSVAULT_FASTCSV_MODULE_DIR
    _native = None

_CProfile: Any = getattr(_native, "Profile", None)
#: Whether the C implementation is built.
C_AVAILABLE = _CProfile is not None

# Type flags of a column's state: set while every non-null value satisfies the type.
F_INT, F_NUM, F_BOOL, F_DATE, F_DATETIME = 1, 2, 4, 8, 16
F_ALL = 31
#: The missing-value tokens, in the order of a state's token counts.
TOKENS = ("NA", "N/A", "null", "NULL", "NaN", "-")
_TOKEN_INDEX = {token: index for index, token in enumerate(TOKENS)}
EXAMPLES = 5
EXAMPLE_CHARS = 64
_CANDIDATES = EXAMPLES + len(TOKENS)  # the tokens may turn out to be null
HLL_P = 12
HLL_M = 1 << HLL_P

_MASK = (1 << 64) - 1
_SEED = 0xCBF29CE484222325
_MULT = 0x9E3779B97F4A7C15

_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_NUMBER = re.compile(
    r"[+-]?(?:[0-9]+|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)"
)
_COMMA_NUMBER = re.compile(r"[+-]?[0-9]+,[0-9]+")
_BOOLEANS = frozenset({"true", "false", "yes", "no"})
_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]{1,9})?)?"
    r"(?:Z|[+-]([0-9]{2}):([0-9]{2}))?)?"
)
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DATE, _DATETIME_ONLY = 1, 2


def distinct_bound(width: int) -> int:
    """Distinct values per column counted exactly, for rows of ``width`` values."""
    return max(256, min(10_000, 1_000_000 // width))


def _fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _MASK
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _MASK
    return k ^ (k >> 33)


def _hash64(data: bytes) -> int:
    """The 64-bit hash of a value's UTF-8 bytes (see the module docstring)."""
    h = _SEED
    for (word,) in struct.iter_unpack("<Q", data + bytes(-len(data) % 8)):
        h = ((h ^ word) * _MULT) & _MASK
        h ^= h >> 32
    return _fmix64(h ^ len(data))


def _hll_add(registers: bytearray, h: int) -> None:
    rest = (h << HLL_P) & _MASK
    rank = 65 - rest.bit_length() if rest else 64 - HLL_P + 1
    index = h >> (64 - HLL_P)
    if rank > registers[index]:
        registers[index] = rank


def hll_estimate(registers: bytes) -> int:
    """The HyperLogLog estimate of ``registers`` (p = 12), small-range corrected."""
    m = len(registers)
    alpha = 0.7213 / (1 + 1.079 / m)
    estimate = alpha * m * m / math.fsum(2.0**-r for r in registers)
    zeros = registers.count(0)
    if estimate <= 2.5 * m and zeros:
        estimate = m * math.log(m / zeros)
    return math.floor(estimate + 0.5)


def _datetime_kind(value: str) -> int:
    """_DATE, _DATETIME_ONLY, or 0."""
    match = _DATETIME.fullmatch(value)
    if match is None:
        return 0
    year, month, day, hour, minute, second, off_hour, off_minute = match.groups()
    y, mo, d = int(year), int(month), int(day)
    if y < 1 or not 1 <= mo <= 12 or d < 1:
        return 0
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if d > _DAYS[mo - 1] + (mo == 2 and leap):
        return 0
    if hour is None:
        return _DATE
    for part, top in ((hour, 23), (minute, 59), (second, 59), (off_hour, 23), (off_minute, 59)):
        if part is not None and int(part) > top:
            return 0
    return _DATETIME_ONLY


class _Column:
    """One column's state, as the C implementation keeps it."""

    __slots__ = (
        "candidates",
        "dmax",
        "dmin",
        "empties",
        "flags",
        "hashes",
        "imax",
        "imin",
        "other",
        "registers",
        "tmax",
        "tmin",
        "tokens",
    )

    def __init__(self) -> None:
        self.empties = 0
        self.other = 0
        self.tokens = [0] * len(TOKENS)
        self.flags = F_ALL
        self.imin = self.imax = 0
        self.dmin = self.dmax = 0.0
        self.tmin = self.tmax = ""
        self.hashes: set[int] | None = set()
        self.registers: bytearray | None = None
        self.candidates: list[tuple[str, bool]] = []  # (cut text, is a token)


class _PyProfile:
    """The reference implementation of ``_csvblocks.Profile`` (same methods, same state)."""

    def __init__(self, width: int, decimal_comma: bool) -> None:
        if not 1 <= width <= 0x7FFFFFFF:
            raise ValueError("Profile: width out of range")
        self.width = width
        self.bound = distinct_bound(width)
        self.rows = 0
        self._decimal_comma = decimal_comma
        self._width_be = width.to_bytes(4, "big")
        self._columns = [_Column() for _ in range(width)]
        self._broken = False

    def _usable(self) -> None:
        if self._broken:
            raise ValueError("Profile: unusable after an earlier error")

    def feed_blocks(self, blocks: list[bytes], start: int = 0) -> int:
        """Feed the grid blocks ``blocks[start:]``; the index of the first other block."""
        self._usable()
        if not 0 <= start <= len(blocks):
            raise ValueError("feed_blocks: start out of range")
        stop = start
        while stop < len(blocks):
            block = blocks[stop]
            if not isinstance(block, bytes):
                raise TypeError("feed_blocks: blocks must be bytes")
            if not block:
                raise ValueError("feed_blocks: an empty block")
            if block[0] != GRID_FORMAT:
                break
            if len(block) < 9 or not block[1:5].lstrip(b"\0") or block[5:9] != self._width_be:
                raise ValueError("feed_blocks: a grid block of another width, or malformed")
            stop += 1
        for block in blocks[start:stop]:
            try:
                rows = block_rows(block)
            except ValueError:
                self._broken = True
                raise
            self._feed(rows)
        return stop

    def feed_rows(self, rows: Sequence[Sequence[str]]) -> None:
        """Feed rows of ``width`` str values each."""
        self._usable()
        for row in rows:
            if not isinstance(row, list | tuple):
                raise TypeError("feed_rows: each row must be a list or a tuple")
            if len(row) != self.width:
                raise ValueError("feed_rows: a row of another width")
            if not all(isinstance(value, str) for value in row):
                raise TypeError("feed_rows: values must be str")
        self._feed(rows)

    def _feed(self, rows: Sequence[Sequence[str]]) -> None:
        for column, values in zip(self._columns, zip(*rows, strict=True), strict=False):
            try:
                self._feed_column(column, values)
            except ValueError:  # a lone surrogate
                self._broken = True
                raise
        self.rows += len(rows)

    def _feed_column(self, c: _Column, values: Sequence[str]) -> None:
        decimal_comma = self._decimal_comma
        for value in values:
            if not value:
                c.empties += 1
                continue
            token = _TOKEN_INDEX.get(value)
            if token is not None:
                if not c.tokens[token] and len(c.candidates) < _CANDIDATES:
                    c.candidates.append((value, True))
                c.tokens[token] += 1
                continue
            h = _hash64(value.encode("utf-8"))
            first = c.other == 0
            c.other += 1
            flags = c.flags
            if flags & (F_INT | F_NUM):
                if _INTEGER.fullmatch(value):
                    if flags & F_INT:
                        i = int(value)
                        if first:
                            c.imin = c.imax = i
                        elif i < c.imin:
                            c.imin = i
                        elif i > c.imax:
                            c.imax = i
                    d = float(value)
                else:
                    flags &= ~F_INT
                    d = math.nan
                    if _NUMBER.fullmatch(value):
                        d = float(value)
                    elif decimal_comma and _COMMA_NUMBER.fullmatch(value):
                        d = float(value.replace(",", "."))
                if math.isfinite(d):
                    if first:
                        c.dmin = c.dmax = d
                    elif d < c.dmin:
                        c.dmin = d
                    elif d > c.dmax:
                        c.dmax = d
                else:
                    flags &= ~F_NUM
            if flags & F_BOOL and not (value.isascii() and value.lower() in _BOOLEANS):
                flags &= ~F_BOOL
            if flags & F_DATETIME:
                kind = _datetime_kind(value)
                if kind != _DATE:
                    flags &= ~F_DATE
                if not kind:
                    flags &= ~F_DATETIME
                elif first:
                    c.tmin = c.tmax = value
                elif value < c.tmin:
                    c.tmin = value
                elif value > c.tmax:
                    c.tmax = value
            c.flags = flags
            if c.hashes is None:
                assert c.registers is not None
                _hll_add(c.registers, h)
            elif h not in c.hashes:
                c.hashes.add(h)
                if len(c.hashes) > self.bound:
                    c.registers = bytearray(HLL_M)
                    for old in c.hashes:
                        _hll_add(c.registers, old)
                    c.hashes = None
                if len(c.candidates) < _CANDIDATES:
                    c.candidates.append((value[:EXAMPLE_CHARS], False))

    def state(self) -> list[tuple[Any, ...]]:
        """Each column's raw state (see :func:`_column_result`)."""
        self._usable()
        return [
            (
                c.empties,
                tuple(c.tokens),
                c.other,
                c.flags,
                *((c.imin, c.imax) if c.other and c.flags & F_INT else (None, None)),
                *((c.dmin, c.dmax) if c.other and c.flags & F_NUM else (None, None)),
                *((c.tmin, c.tmax) if c.other and c.flags & F_DATETIME else (None, None)),
                None if c.hashes is None else len(c.hashes),
                None if c.registers is None else bytes(c.registers),
                list(c.candidates),
            )
            for c in self._columns
        ]


class _Implementation(Protocol):
    rows: int
    width: int

    def feed_blocks(self, blocks: list[bytes], start: int = 0) -> int: ...
    def feed_rows(self, rows: Sequence[Sequence[str]]) -> None: ...
    def state(self) -> list[tuple[Any, ...]]: ...


_TYPES = (
    (F_INT, "integer"),
    (F_NUM, "number"),
    (F_BOOL, "boolean"),
    (F_DATE, "date"),
    (F_DATETIME, "datetime"),
)


def _column_result(name: str, state: tuple[Any, ...]) -> dict[str, object]:
    """One column's result from its raw state: (empties, token counts, other non-empty
    values, type flags, int min, int max, float min, float max, text min, text max,
    exact distinct count or None, HyperLogLog registers or None, candidate examples as
    (text, is a token))."""
    (empties, tokens, other, flags, imin, imax, dmin, dmax, tmin, tmax) = state[:10]
    exact, registers, candidates = state[10:]
    token_values = sum(tokens)
    tokens_null = bool(token_values and other and flags & F_NUM)
    nulls = empties + (token_values if tokens_null else 0)
    kind = "text"
    if other and not (token_values and not tokens_null):
        kind = next((name for flag, name in _TYPES if flags & flag), "text")
    low: object = None
    high: object = None
    if kind == "integer":
        low, high = imin, imax
    elif kind == "number":
        low, high = dmin, dmax
    elif kind in ("date", "datetime"):
        low, high = tmin, tmax
    distinct = exact if registers is None else hll_estimate(registers)
    if not tokens_null:
        distinct += sum(1 for count in tokens if count)
    return {
        "name": name,
        "type": kind,
        "count": other + token_values + empties - nulls,
        "nulls": nulls,
        "min": low,
        "max": high,
        "distinct": distinct,
        "distinct_exact": registers is None,
        "examples": [text for text, token in candidates if not (token and tokens_null)][:EXAMPLES],
    }


class Profiler:
    """The profile of the rows fed, column by column; see the module docstring.

    Feed it the rows of a file once, in order, as blocks and/or rows; then
    :meth:`result`. It uses the C implementation when the extension is built.
    After an error (a ValueError for a block or row that does not fit) it refuses
    further use.
    """

    def __init__(self, width: int, *, decimal_comma: bool, _impl: _Implementation | None = None):
        if _impl is None:
            _impl = (
                _CProfile(width, decimal_comma) if C_AVAILABLE else _PyProfile(width, decimal_comma)
            )
        self._impl = _impl
        self.width = width

    @property
    def rows(self) -> int:
        """Rows fed so far."""
        return self._impl.rows

    @property
    def native(self) -> bool:
        """Whether the C implementation runs."""
        return not isinstance(self._impl, _PyProfile)

    def feed_blocks(self, plaintexts: Sequence[bytes]) -> None:
        """Feed block plaintexts (csvault.csvio.blocks) of rows of ``width`` values: grid
        blocks directly, any other format decoded with :func:`block_rows`."""
        blocks = plaintexts if isinstance(plaintexts, list) else list(plaintexts)
        start = 0
        while start < len(blocks):
            start = self._impl.feed_blocks(blocks, start)
            if start < len(blocks):
                self._impl.feed_rows(block_rows(blocks[start]))
                start += 1

    def feed_rows(self, rows: Sequence[Sequence[str]]) -> None:
        """Feed rows of ``width`` values each."""
        self._impl.feed_rows(rows)

    def state(self) -> list[tuple[Any, ...]]:
        """The raw state of each column (for tests; see :func:`_column_result`)."""
        return self._impl.state()

    def result(self, columns: Sequence[str]) -> list[dict[str, object]]:
        """One JSON-ready dict per column, named by ``columns``."""
        if len(columns) != self.width:
            raise ValueError(f"result: {len(columns)} names for {self.width} columns")
        return [
            _column_result(name, state)
            for name, state in zip(columns, self._impl.state(), strict=True)
        ]


def py_profiler(width: int, *, decimal_comma: bool) -> Profiler:
    """A profiler running the Python reference implementation."""
    return Profiler(width, decimal_comma=decimal_comma, _impl=_PyProfile(width, decimal_comma))


def c_profiler(width: int, *, decimal_comma: bool) -> Profiler | None:
    """A profiler running the C implementation; None when it is not built."""
    if not C_AVAILABLE:
        return None
    return Profiler(width, decimal_comma=decimal_comma, _impl=_CProfile(width, decimal_comma))
