"""The ingest's fast path: CSV text straight to blocks of rows, in C.

:class:`CsvStream` (reader.py) is the reference reader: it knows every rule
of the format and says exactly what is wrong and where. It builds a Python
``str`` per value and a ``list`` per row, which is most of the ingest's CPU
time. :class:`FastBlocks` reads the same file with the C parser of
``csvault.csvio._csvblocks``, which turns complete rows into the "grid"
block plaintexts of csvault.csvio.blocks without any Python object per value,
with the GIL released. It accepts only rows the reference reader reads the
same way and *declines* at the first row it is not sure about (any quote in an
unquoted value, invalid UTF-8, a ragged row, a row limit...): from there on the
ingest goes on with the reference reader, which skips the rows already done and
takes over at exactly that row. A file the fast path reads to its end has
exactly the rows the reference reader gives (tests/csvio/test_fastcsv.py
checks this on generated and hostile files).
"""

from __future__ import annotations

import codecs
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

from csvault.csvio.blocks import (
    BLOCK_MAX_ROWS,
    BLOCK_TARGET_BYTES,
    GRID_FORMAT,
    GRID_HEADER,
    grid_block,
)
from csvault.csvio.limits import CsvLimits
from csvault.csvio.transcode import Undecodable

# A directory holding another build of the C parser to use instead of the one in the
# package (scripts/c-sanitize.sh's sanitizer build); it must load from there.
MODULE_DIR_ENV = "CSVAULT_FASTCSV_MODULE_DIR"


def _load_parser() -> ModuleType | None:
    directory = os.environ.get(MODULE_DIR_ENV)
    if not directory:
        try:  # built by setup.py; the ingest uses the reference reader without it
            from csvault.csvio import _csvblocks
        except ImportError:  # pragma: no cover - depends on the build
            return None
        return _csvblocks
    name = "csvault.csvio._csvblocks"
    path = os.path.join(directory, "_csvblocks" + importlib.machinery.EXTENSION_SUFFIXES[0])
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not os.path.isfile(path):
        raise ImportError(f"{MODULE_DIR_ENV}: no C parser at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


_csvblocks: Any = _load_parser()  # untyped: an extension module

if _csvblocks is not None and (GRID_FORMAT, GRID_HEADER.size) != (
    _csvblocks.GRID_FORMAT,
    _csvblocks.GRID_HEADER_SIZE,
):
    # Built from another definition of the block format: never use it (the reference
    # reader gives the same rows; CI's native check fails on FAST_AVAILABLE).
    warnings.warn(
        "csvault.csvio._csvblocks writes another grid block format than csvault.csvio.blocks; "
        "it is not used (rebuild it: make install)",
        RuntimeWarning,
        stacklevel=1,
    )
    _csvblocks = None

__all__ = ["FAST_AVAILABLE", "FastBlocks", "open_fast_blocks"]

FAST_AVAILABLE = _csvblocks is not None

_MORE, _DECLINE, _END = 0, 1, 2
# Text handed to the parser at a time: blocks never span two calls, so a call
# should hold many of them.
_READ_BYTES = 1 << 20


class FastBlocks:
    """The data rows of a UTF-8 CSV file as grid block plaintexts, while the C parser
    can read them; see the module docstring. Create it with :func:`open_fast_blocks`."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        delimiter: str,
        width: int,
        limits: CsvLimits,
        block_rows: int = BLOCK_MAX_ROWS,
        block_bytes: int = BLOCK_TARGET_BYTES,
    ) -> None:
        self.rows_done = 0  # data rows returned so far
        self.bytes_consumed = 0  # raw input bytes pulled so far
        self.declined = False  # the reference reader must take over after rows_done
        self.finished = False  # every row has been returned
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buf = b""
        self._pos = 0
        self._final = False
        self._delimiter = ord(delimiter)
        self._width = width
        self._limits = limits
        self._block_rows = block_rows
        self._block_bytes = block_bytes
        self._started = False
        # The chunks stopped with Undecodable (a transcoded file): decline after the
        # rows before it.
        self._broken = False

    def _more(self) -> None:
        """Append the next ~1 MiB of text to what is left, or mark the end."""
        parts = [self._buf[self._pos :]]
        size = len(parts[0])
        # The first read holds at least the length of a byte order mark.
        enough = _READ_BYTES if self._started else max(_READ_BYTES, len(codecs.BOM_UTF8))
        try:
            for chunk in self._chunks:
                self.bytes_consumed += len(chunk)
                parts.append(bytes(chunk))
                size += len(parts[-1])
                if size >= enough:
                    break
            else:
                self._final = True
        except Undecodable:
            self._broken = True
        self._buf, self._pos = b"".join(parts), 0
        if not self._started:
            self._started = True
            if self._buf.startswith(codecs.BOM_UTF8):  # dropped, as the reference reader does
                self._pos = len(codecs.BOM_UTF8)

    def _too_long(self) -> bool:
        """The unfinished row left in the buffer is longer than a line may be: whether it
        is an error is for the reference reader to say."""
        return len(self._buf) - self._pos > self._limits.max_line_chars

    def _parse(self, max_rows: int) -> tuple[list[bytes], list[int], int, int]:
        limits = self._limits
        blocks, counts, pos, rows, status = _csvblocks.parse(
            self._buf,
            self._pos,
            self._final,
            self._delimiter,
            self._width,
            limits.max_field_bytes,
            limits.max_line_chars,
            max_rows,
            self._block_rows,
            self._block_bytes,
        )
        self._pos = pos
        return blocks, counts, rows, status

    def skip_header(self, columns: list[str]) -> bool:
        """Read the header row; True if the parser reads it as ``columns`` (else the
        fast path is not used for this file)."""
        while not self._final or self._pos < len(self._buf):
            blocks, _, rows, status = self._parse(1)
            if rows:
                return blocks[0] == grid_block([columns])
            if status != _MORE or self._too_long() or self._broken:
                return False
            self._more()
        return False

    def read(self, max_rows: int) -> tuple[list[bytes], list[int]] | None:
        """The next rows as (block plaintexts, rows in each block): at most ``max_rows``,
        and at most the rows of about 1 MiB of text, so memory stays bounded.

        ``([], [])`` once every row has been read; ``None`` once the parser has
        declined (see :attr:`rows_done` for where the reference reader takes over).
        Rows read before a decline are returned first.
        """
        if self.declined:
            return None
        out: list[bytes] = []
        counts: list[int] = []
        while max_rows > 0 and not self.finished:
            room = self._limits.max_rows - self.rows_done
            if room <= 0:
                # The row limit: whether more rows follow, and the error if they
                # do, is for the reference reader to say.
                self.declined = True
                break
            blocks, sizes, rows, status = self._parse(min(max_rows, room))
            out += blocks
            counts += sizes
            self.rows_done += rows
            max_rows -= rows
            if status == _DECLINE:
                self.declined = True
                break
            if status == _END:
                self.finished = True
                break
            if out or max_rows <= 0 or self.rows_done >= self._limits.max_rows:
                break
            if self._too_long() or self._broken:
                self.declined = True
                break
            self._more()
        if self.declined and not out:
            return None
        return out, counts


def open_fast_blocks(
    chunks: Iterable[bytes],
    *,
    columns: list[str],
    has_header: bool,
    delimiter: str,
    encoding: str,
    limits: CsvLimits,
    block_bytes: int = BLOCK_TARGET_BYTES,
) -> FastBlocks | None:
    """The fast path over a file whose header the reference reader has read as
    ``columns``; None when it cannot serve this file (not built, not UTF-8 (hand it
    csvault.csvio.transcode.Utf8Chunks of another encoding, as ``"utf-8"``), a
    delimiter outside ASCII, limits outside the parser's range, or a header it reads
    differently). Blocks close at the first row that reaches ``block_bytes`` of text,
    or at ``BLOCK_MAX_ROWS`` rows."""
    if _csvblocks is None or encoding != "utf-8" or not 0 < ord(delimiter) < 128:
        return None
    if not (
        0 <= limits.max_field_bytes <= sys.maxsize and 2 <= limits.max_line_chars <= sys.maxsize
    ):
        return None
    fast = FastBlocks(
        chunks, delimiter=delimiter, width=len(columns), limits=limits, block_bytes=block_bytes
    )
    if has_header and not fast.skip_header(columns):
        return None
    return fast
