"""The plaintexts of stored rows: one row, and a block of consecutive rows.

Defined here once for everything that makes or reads them: the row cipher
(csvault.crypto.rows) seals and opens them, the C fast path
(``csvault.csvio._csvblocks``) writes "grid" blocks straight from CSV text, and the
tests check both against these functions. ``GRID_FORMAT`` and ``GRID_HEADER`` are also
compiled into the C module, which exports them; :mod:`csvault.csvio.fastcsv` refuses a
module whose values differ.

Row plaintext starts with a format byte:

* ``0x00`` - the UTF-8 encoding of ``"\\x00".join(values)``. Used when there is at least
  one value and no value contains NUL, i.e. almost always.
* ``0x01`` - general form for anything else (the empty list, values containing NUL): a
  4-byte big-endian value count, one 4-byte big-endian length per value (in code points),
  then the UTF-8 encoding of the concatenated values.

Block plaintext starts with a format byte too:

* ``0x02`` - "grid": row count and width (4 bytes BE each), then the UTF-8 encoding of
  every value of every row joined with NUL. Used when the rows have one width >= 1 and no
  value contains NUL - every block of a CSV file, whose reader refuses NUL and ragged rows.
* ``0x03`` - "row list": row count (4 bytes BE), the byte length of each row's
  plaintext (4 bytes BE each), then those plaintexts one after the other.
* ``0x04`` - "compressed": a grid or row-list plaintext compressed with LZ4's block
  format, its uncompressed size first (python-lz4's ``store_size``: 4 bytes,
  little-endian). Written by the ingest unless ``CSVAULT_COMPRESS_ROWS`` is off:
  CSV text compresses 2-3x, and PostgreSQL's cost of two ingests at once is mostly
  bytes written (heap pages, their extension, WAL).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import chain

import lz4.block

__all__ = [
    "BLOCK_FORMATS",
    "BLOCK_MAX_ROWS",
    "BLOCK_MAX_STORED_BYTES",
    "BLOCK_TARGET_BYTES",
    "COMPRESSED_BLOCK_TARGET_BYTES",
    "GRID_FORMAT",
    "GRID_HEADER",
    "UnknownFormat",
    "block_rows",
    "compressed_block",
    "grid_block",
    "grid_row_count",
    "row_list_block",
    "row_plaintext",
    "row_values",
    "split_grid",
]

# A block holds at most this many rows (readers look this far back for a row's block)
# and aims at this much text: tuples stay well under PostgreSQL's 8 KB page, stored
# inline and uncompressed (see the toast_tuple_target migration). Two tuples fit a page
# while a block's text is at most 3,998 bytes (a tuple is its text plus 82 bytes: the
# tuple header, dataset id, row number, length, grid header, version, attempt and GCM
# tag); the C parser closes a block at the first row that reaches the target, so with
# rows of up to about 150 bytes every page holds two blocks. At 4,096 each block took a
# page of its own: twice the pages to extend and write for the same rows
# (docs/performance.md, "Two ingests at once").
BLOCK_MAX_ROWS = 64
BLOCK_TARGET_BYTES = 3840
# A block that is compressed aims at twice the text: CSV text compresses 2-3x with LZ4,
# and from about 1.9x on its tuple still fits two to a page (text that compresses less
# fills about a page per block, as uncompressed blocks do). Rows of up to about 120
# bytes fill the 64 rows first.
COMPRESSED_BLOCK_TARGET_BYTES = 2 * BLOCK_TARGET_BYTES
# The largest sealed plaintext (compressed or not) a block of two rows or more keeps:
# its tuple then stays under toast_tuple_target (8,160 bytes with the tuple header), so
# PostgreSQL stores it inline, without trying to compress it or moving it out of line.
# The cipher cuts a longer grid block in two by rows (split_grid): wide rows of text
# that does not compress, where the parser's target is passed by up to one row.
BLOCK_MAX_STORED_BYTES = 8000

_FORMAT_SEPARATED = 0x00
_FORMAT_SEPARATED_BYTE = bytes([_FORMAT_SEPARATED])
_FORMAT_COUNTED = 0x01
_FORMAT_COUNTED_BYTE = bytes([_FORMAT_COUNTED])
GRID_FORMAT = 0x02
_FORMAT_ROW_LIST = 0x03
_FORMAT_COMPRESSED = 0x04
_FORMAT_COMPRESSED_BYTE = bytes([_FORMAT_COMPRESSED])
GRID_HEADER = struct.Struct(">BII")  # format byte, row count, width
_U32 = struct.Struct(">I")
#: The format bytes a block plaintext may start with.
BLOCK_FORMATS = frozenset({GRID_FORMAT, _FORMAT_ROW_LIST, _FORMAT_COMPRESSED})


class UnknownFormat(ValueError):
    """A plaintext whose format byte this version does not know."""


def _counted(values: Sequence[str]) -> bytes:
    lengths = [len(value) for value in values]
    header = struct.pack(f">I{len(lengths)}I", len(lengths), *lengths)
    return _FORMAT_COUNTED_BYTE + header + "".join(values).encode("utf-8")


def _counted_values(plaintext: bytes) -> list[str]:
    # Called only on authenticated plaintext, but still checked so that a bug can never
    # turn into silently wrong values.
    if len(plaintext) < 5:
        raise ValueError("counted row is too short")
    (count,) = _U32.unpack_from(plaintext, 1)
    text_start = 5 + 4 * count
    if len(plaintext) < text_start:
        raise ValueError("counted row header is truncated")
    lengths = struct.unpack_from(f">{count}I", plaintext, 5)
    text = plaintext[text_start:].decode("utf-8")
    if sum(lengths) != len(text):
        raise ValueError("counted row lengths do not match its text")
    values: list[str] = []
    position = 0
    for length in lengths:
        values.append(text[position : position + length])
        position += length
    return values


def row_plaintext(values: Sequence[str]) -> bytes:
    """One row's plaintext: the NUL-separated format, or the counted one when needed."""
    # NUL-separated is unambiguous only if no value contains NUL; a plain join plus a
    # membership test (both C loops) checks that faster than any per-value loop.
    if values and "\x00" not in "".join(values):
        return _FORMAT_SEPARATED_BYTE + "\x00".join(values).encode("utf-8")
    return _counted(values)


def row_values(plaintext: bytes) -> list[str]:
    """The values of a row plaintext; :class:`UnknownFormat` or ``ValueError`` if malformed."""
    if plaintext[0] == _FORMAT_SEPARATED:
        return plaintext[1:].decode("utf-8").split("\x00")
    if plaintext[0] == _FORMAT_COUNTED:
        return _counted_values(plaintext)
    raise UnknownFormat(plaintext[0])


def grid_block(rows: Sequence[Sequence[str]]) -> bytes | None:
    """The "grid" block plaintext of ``rows``, or None if it cannot hold them (rows of
    different widths, a width of 0, a value containing NUL, or no rows)."""
    widths = set(map(len, rows))
    if len(widths) != 1 or 0 in widths:
        return None
    (width,) = widths
    # One join, and on the way back one split. With equal widths, exactly
    # rows * width - 1 NULs in the joined text prove that no value holds one.
    text = "\x00".join(chain.from_iterable(rows))
    if text.count("\x00") != len(rows) * width - 1:
        return None
    return GRID_HEADER.pack(GRID_FORMAT, len(rows), width) + text.encode("utf-8")


def grid_row_count(plaintext: bytes) -> int | None:
    """The row count a grid plaintext declares; None if it is not a grid plaintext."""
    if len(plaintext) < GRID_HEADER.size or plaintext[0] != GRID_FORMAT:
        return None
    return int.from_bytes(plaintext[1:5], "big")


def split_grid(plaintext: bytes) -> tuple[bytes, int, bytes, int]:
    """A grid plaintext of two rows or more cut in two by rows: ``(first, its row count,
    second, its row count)``, the first half rounded down. Values hold no NUL (nor does
    UTF-8 outside U+0000), so the separators are found with ``bytes.index``."""
    _, count, width = GRID_HEADER.unpack_from(plaintext)
    if count < 2:
        raise ValueError("a grid block of one row cannot be split")
    half = count // 2
    position = GRID_HEADER.size
    for _ in range(half * width):
        position = plaintext.index(b"\x00", position) + 1
    first = GRID_HEADER.pack(GRID_FORMAT, half, width) + plaintext[GRID_HEADER.size : position - 1]
    second = GRID_HEADER.pack(GRID_FORMAT, count - half, width) + plaintext[position:]
    return first, half, second, count - half


def row_list_block(rows: Sequence[Sequence[str]]) -> bytes:
    """A block's general plaintext: the row count, each row's plaintext length, then
    the rows' plaintexts (:func:`row_plaintext`) one after the other."""
    parts = list(map(row_plaintext, rows))
    header = struct.pack(f">BI{len(parts)}I", _FORMAT_ROW_LIST, len(parts), *map(len, parts))
    return header + b"".join(parts)


def compressed_block(plaintext: bytes) -> bytes:
    """The "compressed" form of a grid or row-list block plaintext."""
    return _FORMAT_COMPRESSED_BYTE + lz4.block.compress(plaintext)


def block_rows(plaintext: bytes) -> list[list[str]]:
    """The rows of a block plaintext (any of the three formats).

    Raises :class:`UnknownFormat` for an unknown format byte and ``ValueError`` (or
    ``struct.error``) for a plaintext that does not match its own shape.
    """
    if plaintext[0] == _FORMAT_COMPRESSED:
        try:
            plaintext = lz4.block.decompress(memoryview(plaintext)[1:])
        except (ValueError, lz4.block.LZ4BlockError) as error:
            raise ValueError("compressed block does not decompress") from error
        if not plaintext or plaintext[0] == _FORMAT_COMPRESSED:
            raise ValueError("a compressed block holds an empty or compressed block")
    if plaintext[0] == GRID_FORMAT:
        _, count, width = GRID_HEADER.unpack_from(plaintext)
        values = plaintext[GRID_HEADER.size :].decode("utf-8").split("\x00")
        if count < 1 or width < 1 or len(values) != count * width:
            raise ValueError("grid block does not match its shape")
        return [values[i : i + width] for i in range(0, len(values), width)]
    if plaintext[0] == _FORMAT_ROW_LIST:
        (count,) = _U32.unpack_from(plaintext, 1)
        lengths = struct.unpack_from(f">{count}I", plaintext, 5)
        position = 5 + 4 * count
        if count < 1 or position + sum(lengths) != len(plaintext):
            raise ValueError("row list lengths do not match the block")
        rows = []
        for length in lengths:
            rows.append(row_values(plaintext[position : position + length]))
            position += length
        return rows
    raise UnknownFormat(plaintext[0])
