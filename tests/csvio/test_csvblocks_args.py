"""The C parser's argument checks: csvault.csvio._csvblocks.parse called directly.

Every argument it takes, with the types and ranges it refuses (TypeError for a wrong
type, ValueError for a value out of range, OverflowError past a C Py_ssize_t/int).
"""

from __future__ import annotations

import array
import sys

import pytest

from csvault.csvio import fastcsv
from csvault.csvio.fastcsv import FAST_AVAILABLE, open_fast_blocks
from csvault.csvio.limits import CsvLimits

pytestmark = pytest.mark.skipif(not FAST_AVAILABLE, reason="C fast path not built")

# In the order parse() takes them.
DEFAULTS: dict[str, object] = {
    "buf": b"a,b\n1,2\n",
    "pos": 0,
    "final": True,
    "delimiter": ord(","),
    "width": 2,
    "max_field": 100,
    "max_row": 100,
    "max_rows": 10,
    "block_rows": 10,
    "block_bytes": 1000,
}


def parse(**changes: object) -> tuple[list[bytes], list[int], int, int, int]:
    return fastcsv._csvblocks.parse(*{**DEFAULTS, **changes}.values())


def test_the_defaults_parse() -> None:
    blocks, counts, pos, rows, status = parse()
    assert (counts, pos, rows, status) == ([2], 8, 2, 2)
    assert blocks == [b"\x02\x00\x00\x00\x02\x00\x00\x00\x02a\x00b\x001\x002"]


@pytest.mark.parametrize(
    "buf",
    [bytearray(b"a,b\n1,2\n"), memoryview(b"xxa,b\n1,2\n")[2:], array.array("B", b"a,b\n1,2\n")],
)
def test_any_contiguous_bytes_like_buffer_is_taken(buf) -> None:
    assert parse(buf=buf)[1:] == ([2], 8, 2, 2)


@pytest.mark.parametrize(
    "buf",
    [
        "a,b\n1,2\n",  # text, not bytes
        None,
        12,
        [97, 10],
        memoryview(b"a,b\n1,2\n")[::2],  # not contiguous
    ],
)
def test_a_buffer_that_is_not_contiguous_bytes_is_refused(buf) -> None:
    with pytest.raises((TypeError, BufferError)):
        parse(buf=buf)


@pytest.mark.parametrize("name", ["pos", "delimiter", "width", "max_field", "max_row", "max_rows"])
@pytest.mark.parametrize("value", [1.0, "1", None, b","])
def test_a_number_argument_takes_only_integers(name, value) -> None:
    with pytest.raises(TypeError):
        parse(**{name: value})


@pytest.mark.parametrize("name", ["block_rows", "block_bytes"])
def test_the_block_bounds_take_only_integers(name) -> None:
    with pytest.raises(TypeError):
        parse(**{name: 2.0})


@pytest.mark.parametrize(
    "name",
    ["pos", "width", "max_field", "max_row", "max_rows", "block_rows", "block_bytes", "delimiter"],
)
@pytest.mark.parametrize("value", [sys.maxsize + 1, -sys.maxsize - 2, 2**100])
def test_an_integer_past_the_c_type_is_an_overflow_error(name, value) -> None:
    with pytest.raises(OverflowError):
        parse(**{name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("pos", -1),
        ("pos", 9),  # past the end of buf
        ("delimiter", 0),
        ("delimiter", -1),
        ("delimiter", 128),  # not ASCII
        ("delimiter", ord('"')),
        ("delimiter", ord("\r")),
        ("delimiter", ord("\n")),
        ("width", 0),
        ("width", -2),
        ("width", 2**31),  # the block header holds it in 32 bits
        ("max_field", -1),
        ("max_field", -sys.maxsize - 1),
        ("max_row", 1),  # a blank CRLF line is longer, and blank lines are not measured
        ("max_row", 0),
        ("max_row", -1),
        ("max_rows", -1),
        ("block_rows", 0),
        ("block_rows", 2**31),  # the block header holds it in 32 bits
        ("block_bytes", 0),
        ("block_bytes", -1),
    ],
)
def test_a_value_out_of_range_is_a_value_error(name, value) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse(**{name: value})


@pytest.mark.parametrize(
    ("name", "value", "result"),
    [
        ("pos", 8, ([], 8, 0, 2)),  # at the end
        ("delimiter", 1, ([], 0, 0, 1)),  # "a,b" is one value: not width 2
        ("delimiter", 127, ([], 0, 0, 1)),
        ("width", 2**31 - 1, ([], 0, 0, 1)),
        ("max_field", 0, ([], 0, 0, 1)),  # only empty values fit
        ("max_field", sys.maxsize, ([2], 8, 2, 2)),
        ("max_row", 2, ([], 0, 0, 1)),
        ("max_row", sys.maxsize, ([2], 8, 2, 2)),
        ("max_rows", 0, ([], 0, 0, 0)),
        ("max_rows", sys.maxsize, ([2], 8, 2, 2)),
        ("block_rows", 1, ([1, 1], 8, 2, 2)),
        ("block_rows", 2**31 - 1, ([2], 8, 2, 2)),
        ("block_bytes", 1, ([1, 1], 8, 2, 2)),
        ("block_bytes", sys.maxsize, ([2], 8, 2, 2)),
    ],
)
def test_values_at_the_ends_of_their_range_are_taken(name, value, result) -> None:
    assert parse(**{name: value})[1:] == result


@pytest.mark.parametrize("delimiter", [1, 127])
def test_any_other_ascii_delimiter_is_taken(delimiter) -> None:
    assert parse(delimiter=delimiter, width=1)[1:] == ([2], 8, 2, 2)


@pytest.mark.parametrize("final", [0, 1, False, True, "", "x", None, [], [0]])
def test_final_is_any_truth_value(final) -> None:
    status = parse(buf=b"a,b\n1,2", final=final)[4]
    assert status == (2 if final else 0)


def test_every_argument_is_required_and_positional() -> None:
    parser = fastcsv._csvblocks.parse
    args = list(DEFAULTS.values())
    for count in range(len(args)):
        with pytest.raises(TypeError):
            parser(*args[:count])
    with pytest.raises(TypeError):
        parser(*args, 1)
    with pytest.raises(TypeError):
        parser(*args[:-1], block_bytes=1000)


@pytest.mark.parametrize(
    "limits",
    [
        CsvLimits(max_field_bytes=-1),
        CsvLimits(max_line_chars=1),
        CsvLimits(max_field_bytes=sys.maxsize + 1),
        CsvLimits(max_line_chars=2**70),
    ],
)
def test_the_fast_path_is_not_used_with_limits_the_parser_does_not_take(limits) -> None:
    reader = open_fast_blocks(
        [b"a,b\n1,2\n"],
        columns=["a", "b"],
        has_header=True,
        delimiter=",",
        encoding="utf-8",
        limits=limits,
    )
    assert reader is None
