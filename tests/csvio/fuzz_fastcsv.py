"""Coverage-guided fuzzing of the C fast path with atheris (the ``fuzz`` extra).

Each input is split into random bytes and random arguments:

- the bytes are read by the fast path, with random limits, chunk and read sizes, and
  its rows must be the reference reader's or a prefix of them (the oracle of
  tests/csvio/test_fastcsv.py, whose ``check`` this calls);
- ``_csvblocks.parse`` is called on them directly with random arguments, in and out
  of range: it raises ValueError or OverflowError exactly for those out of range, and
  otherwise returns well-formed grid blocks of rows that are the reference reader's
  rows of the same text, or a prefix of them.

scripts/c-sanitize.sh runs it for a bounded time, then runs every input it kept again
with the ASan build; by hand, from the repository's root:
``PYTHONPATH=. python tests/csvio/fuzz_fastcsv.py -max_total_time=60 [corpus dir]``.
Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import os
import sys

import atheris

# scripts/c-sanitize.sh fuzzes a build of the C parser made with
# -fsanitize-coverage=trace-cmp, whose comparisons call libFuzzer's hooks; atheris
# loads libFuzzer only in Fuzz(). So the parser is loaded with lazy binding here and
# Fuzz() loads libFuzzer globally (main): the parser's first calls find its hooks.
_flags = sys.getdlopenflags()
sys.setdlopenflags(os.RTLD_LAZY)
with atheris.instrument_imports(include=["csvault.csvio", "tests.csvio"]):
    from csvault.csvio import fastcsv
    from csvault.csvio.blocks import block_rows, grid_block
    from csvault.csvio.reader import CsvDataError, CsvLimits
    from csvault.csvio.sniff import bom_encoding
    from tests.csvio import test_fastcsv
sys.setdlopenflags(_flags)

TOKENS = [
    b"a,b\r\n",
    b"a",
    b"12",
    b",",
    b";",
    b"\t",
    b" ",
    b'"',
    b'""',
    b"\r",
    b"\n",
    b"\r\n",
    b"\xc3\xa9",
    b"\xe2\x80\xa8",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3",
    b"\x00",
]
DELIMITERS = [",", ";", "\t", "|", "\x01", "a"]
SIZE_MAX = sys.maxsize


def ranged(fdp: atheris.FuzzedDataProvider, low: int, high: int) -> int:
    """Mostly in [low, high]; sometimes a value at or past the ends of a C argument."""
    if fdp.ConsumeIntInRange(0, 15):
        return fdp.ConsumeIntInRange(low, high)
    return fdp.PickValueInList([-1, 0, 2**31 - 1, 2**31, SIZE_MAX, SIZE_MAX + 1, -SIZE_MAX - 2])


def in_range(buf: bytes, pos: int, delim: int, args: list[int]) -> bool:
    """Whether parse() takes these arguments (its documented ranges)."""
    width, max_field, max_row, max_rows, rows_per_block, block_bytes = args
    return (
        all(-SIZE_MAX - 1 <= value <= SIZE_MAX for value in (pos, *args))
        and -(2**31) <= delim < 2**31
        and 0 <= pos <= len(buf)
        and 0 < delim < 128
        and delim not in b'"\r\n'
        and 1 <= width <= 2**31 - 1
        and max_field >= 0
        and max_row >= 2
        and max_rows >= 0
        and 1 <= rows_per_block <= 2**31 - 1
        and block_bytes >= 1
    )


def through_the_fast_path(fdp: atheris.FuzzedDataProvider, data: bytes) -> None:
    limits = CsvLimits(
        max_field_bytes=fdp.ConsumeIntInRange(0, 40),
        max_line_chars=fdp.ConsumeIntInRange(1, 80),
        max_rows=fdp.ConsumeIntInRange(1, 50),
    )
    fastcsv._READ_BYTES = fdp.ConsumeIntInRange(1, 64)
    test_fastcsv.check(
        data,
        fdp.ConsumeIntInRange(1, 64),
        fdp.ConsumeIntInRange(1, 20),
        delimiter=fdp.PickValueInList(DELIMITERS),
        has_header=fdp.ConsumeBool(),
        limits=limits,
    )


def through_parse(fdp: atheris.FuzzedDataProvider, data: bytes) -> None:
    pos = ranged(fdp, 0, len(data))
    final = fdp.ConsumeBool()
    delim = ranged(fdp, 1, 127)
    args = [
        ranged(fdp, 1, 4),  # width
        ranged(fdp, 0, 40),  # max_field
        ranged(fdp, 1, 80),  # max_row
        ranged(fdp, 0, 50),  # max_rows
        ranged(fdp, 1, 8),  # block_rows
        ranged(fdp, 1, 64),  # block_bytes
    ]
    buf = bytearray(data) if fdp.ConsumeBool() else data
    try:
        blocks, counts, end, rows, status = fastcsv._csvblocks.parse(buf, pos, final, delim, *args)
    except (ValueError, OverflowError):
        assert not in_range(data, pos, delim, args), (pos, delim, args)
        return
    assert in_range(data, pos, delim, args), (pos, delim, args)
    width, max_field, max_row, max_rows, rows_per_block, _ = args
    assert status in (0, 1, 2)
    assert pos <= end <= len(data)
    assert status != 2 or (final and end == len(data))
    assert len(blocks) == len(counts)
    assert rows == sum(counts) <= max_rows
    got: list[list[str]] = []
    for block, count in zip(blocks, counts, strict=True):
        assert 1 <= count <= rows_per_block
        decoded = block_rows(block)
        assert grid_block(decoded) == block
        assert len(decoded) == count
        assert all(len(row) == width for row in decoded)
        assert all(len(value.encode()) <= max_field for row in decoded for value in row)
        got.extend(decoded)
    text = data[pos:end]
    if not got or bom_encoding(text) is not None:  # FastBlocks drops a BOM itself
        return
    # data[pos:end] is the rows read, blank lines around them: read as a whole file
    # (without a header) the reference reader gives exactly those rows.
    limits = CsvLimits(max_field_bytes=max_field, max_line_chars=max_row, max_columns=width)
    try:
        _, _, expected, problem = test_fastcsv.reference(
            text, delimiter=chr(delim), has_header=False, limits=limits
        )
    except CsvDataError as exc:  # in its first row
        raise AssertionError(f"parse() read rows the reference reader refuses: {exc}") from exc
    assert not problem, (text, got, expected)
    assert got == expected, (text, got, expected)


def one_input(raw: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(raw)
    direct = fdp.ConsumeBool()
    if fdp.ConsumeBool():  # CSV-like text: rows near the limits more often than bytes make
        count = fdp.ConsumeIntInRange(0, 60)
        data = b"".join(TOKENS[fdp.ConsumeIntInRange(0, len(TOKENS) - 1)] for _ in range(count))
    else:
        data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
    if direct:
        through_parse(fdp, data)
    else:
        through_the_fast_path(fdp, data)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    sys.setdlopenflags(os.RTLD_NOW | os.RTLD_GLOBAL)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
