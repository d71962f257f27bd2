"""The C fast path reads exactly the rows the reference reader reads, or declines.

Differential tests: every input is read by the reference reader (reader.py) and by
the fast path (fastcsv.py); the fast path's rows must be a prefix of the reference
rows, all of them when it reads to the end (which it may only do when the reference
reader finds no problem), and it must read ordinary files to the end.
"""

from __future__ import annotations

import codecs
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csvault.csvio import fastcsv
from csvault.csvio.blocks import GRID_FORMAT, GRID_HEADER, block_rows, grid_block
from csvault.csvio.fastcsv import FAST_AVAILABLE, FastBlocks, open_fast_blocks
from csvault.csvio.reader import CsvDataError, CsvLimits, open_csv
from tests.csvdata import HEADER, to_csv, tricky_rows
from tests.csvio.examples import examples

pytestmark = pytest.mark.skipif(
    not FAST_AVAILABLE, reason="C fast path not built (CI fails on this: CSVAULT_TEST_EXPECT)"
)


@pytest.fixture(autouse=True)
def _small_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # Reads of ~16 bytes instead of 1 MiB: rows and characters cut at every place.
    monkeypatch.setattr(fastcsv, "_READ_BYTES", 16)


def grid_rows(plaintext: bytes) -> list[list[str]]:
    """The rows of a block the C parser made, checked to be byte for byte the grid
    plaintext that csvault.csvio.blocks defines for them."""
    rows = block_rows(plaintext)
    assert grid_block(rows) == plaintext
    return rows


def test_the_c_parser_is_built_for_the_block_format_of_blocks_py() -> None:
    assert fastcsv._csvblocks is not None
    assert (
        GRID_FORMAT,
        GRID_HEADER.size,
    ) == (fastcsv._csvblocks.GRID_FORMAT, fastcsv._csvblocks.GRID_HEADER_SIZE)


def test_the_parser_loaded_is_the_one_in_csvault_fastcsv_module_dir_if_it_is_set() -> None:
    """scripts/c-sanitize.sh names its sanitizer build there: this is the proof it is tested."""
    loaded = os.path.dirname(os.path.realpath(fastcsv._csvblocks.__file__))
    directory = os.environ.get(fastcsv.MODULE_DIR_ENV)
    expected = directory or os.path.dirname(fastcsv.__file__)
    assert loaded == os.path.realpath(expected)
    from csvault.csvio import _csvblocks

    assert _csvblocks is fastcsv._csvblocks


def test_a_module_dir_without_the_parser_is_an_import_error(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import csvault.csvio.fastcsv"],
        env={**os.environ, fastcsv.MODULE_DIR_ENV: str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"ImportError: {fastcsv.MODULE_DIR_ENV}: no C parser at {tmp_path}" in result.stderr


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def reference(data: bytes, **kwargs: object) -> tuple[list[str], str, list[list[str]], bool]:
    """(columns, encoding, rows before any problem, whether there was a problem)."""
    stream = open_csv(chunked(data, 65536), **kwargs)  # type: ignore[arg-type]
    rows: list[list[str]] = []
    try:
        while part := stream.read_rows(1000):
            rows.extend(part)
    except CsvDataError:
        return stream.columns, stream.encoding, rows, True
    return stream.columns, stream.encoding, rows, False


def fast(
    data: bytes,
    columns: list[str],
    encoding: str,
    size: int,
    step: int,
    kwargs: dict[str, object],
    *,
    small: bool = False,
) -> tuple[FastBlocks | None, list[list[str]]]:
    """The fast path's rows; ``small``: tiny blocks and tiny reads, so that blocks close
    and reads end at every possible place (the defaults hide those in 1 MiB reads)."""
    has_header = bool(kwargs.get("has_header", True))
    delimiter = str(kwargs.get("delimiter", ","))
    limits: CsvLimits = kwargs.get("limits", CsvLimits())  # type: ignore[assignment]
    reader = open_fast_blocks(
        chunked(data, size),
        columns=columns,
        encoding=encoding,
        has_header=has_header,
        delimiter=delimiter,
        limits=limits,
    )
    rows: list[list[str]] = []
    if reader is None:
        return None, rows
    if small:
        reader = FastBlocks(
            chunked(data, size), delimiter=delimiter, width=len(columns), limits=limits,
            block_rows=2, block_bytes=6,
        )  # fmt: skip
        if has_header:
            assert reader.skip_header(columns)
    while (got := reader.read(step)) is not None:
        blocks, counts = got
        if not counts:
            break
        assert len(blocks) == len(counts)
        for block, count in zip(blocks, counts, strict=True):
            decoded = grid_rows(block)
            assert len(decoded) == count
            rows.extend(decoded)
    assert reader.rows_done == len(rows)
    return reader, rows


def check(
    data: bytes, size: int = 65536, step: int = 20_000, **kwargs: object
) -> FastBlocks | None:
    try:
        columns, encoding, expected, problem = reference(data, **kwargs)
    except CsvDataError:
        return None  # the header is refused: the ingest fails before any fast path
    reader, rows = fast(data, columns, encoding, size, step, kwargs)
    if reader is None:
        return None
    _, small_rows = fast(data, columns, encoding, size, step, kwargs, small=True)
    assert small_rows == rows
    assert rows == expected[: len(rows)]
    if reader.finished:
        assert not problem
        assert rows == expected
    else:
        assert reader.declined
    return reader


ORDINARY = [
    pytest.param(to_csv(tricky_rows(3000)), {}, id="tricky rows, CRLF"),
    pytest.param(to_csv(tricky_rows(500), lineterminator="\n"), {}, id="LF"),
    pytest.param(
        to_csv(
            [[str(i), f"x, {i}", "é"] for i in range(500)], ["a", "b", "c"], lineterminator="\r"
        ),
        {},
        id="lone CR",
    ),
    pytest.param(to_csv(tricky_rows(50), final_newline=False), {}, id="no final newline"),
    pytest.param(codecs.BOM_UTF8 + to_csv(tricky_rows(50)), {}, id="UTF-8 BOM"),
    pytest.param(b"\n\r\n" + b'a;b\n\n1;2\r\n\r\n"3;""";\n', {"delimiter": ";"}, id="blank lines"),
    pytest.param(b"1,2\n3,4\n", {"has_header": False}, id="no header"),
    pytest.param(b'a\n""\n"x\ny"\n', {}, id="one column"),
    pytest.param(
        b"a\tb\n\xc3\xa9\xe2\x82\xac\xf0\x9f\x99\x82\t\xc2\x85\x0b\n",
        {"delimiter": "\t"},
        id="utf-8",
    ),
]


@pytest.mark.parametrize(("data", "kwargs"), ORDINARY)
@pytest.mark.parametrize(("size", "step"), [(65536, 20_000), (1, 3), (7, 1), (4096, 100)])
def test_ordinary_files_are_read_to_the_end_with_the_same_rows(data, kwargs, size, step) -> None:
    reader = check(data, size, step, **kwargs)
    assert reader is not None
    assert reader.finished


HANDED_OVER = [
    b'a,b\n1,2\n3,x"y\n5,6\n',  # stray quote: an error
    b'a,b\n1,2\n3,y"\n5,6\n',  # a quote ending an unquoted value: kept by the reader
    b'a,b\n1,2\n"3"x,4\n',  # text after a closing quote
    b'a,b\n1,2\n3,"open\n',  # unterminated quote
    b"a,b\n1,2\n3\n",  # ragged
    b"a,b\n1,2\n3,4,5\n",  # ragged
    b"a,b\n1,2\n3,\xff\n",  # invalid UTF-8
    b"a,b\n1,2\n3,\xed\xa0\x80\n",  # an encoded surrogate
    b"a,b\n1,2\n3,\xc3",  # a truncated character at the end
    b"a,b\n1,2\n3,\x00\n",  # NUL
    b'a,b\n1,2\n3, "4"\n',  # a space before a quote
]


@pytest.mark.parametrize("data", HANDED_OVER)
@pytest.mark.parametrize("size", [1, 5, 65536])
def test_a_row_it_is_not_sure_of_goes_to_the_reference_reader(data, size) -> None:
    reader = check(data, size)
    assert reader is not None
    assert reader.declined
    assert reader.rows_done == 1


@pytest.mark.parametrize(
    ("limits", "data", "done"),
    [
        (CsvLimits(max_rows=2), b"a\n1\n2\n3\n", 2),
        (CsvLimits(max_rows=2), b"a\n1\n2\n", 2),  # exactly at the limit: the reader decides
        (CsvLimits(max_field_bytes=3, max_line_chars=100), b"a\n123\n1234\n", 1),
        # 2 characters, 4 bytes: within the limit, which counts characters; declined all the same
        (CsvLimits(max_field_bytes=3, max_line_chars=100), b"a\n123\n\xc3\xa9\xc3\xa9\n", 1),
        (CsvLimits(max_field_bytes=10, max_line_chars=8), b"a,b\n1,2\n1234,5678\n", 1),
        (CsvLimits(max_line_chars=6), b"a,b\n1,2\n" + b"1" * 20, 1),  # an unfinished long row
        # A line exactly one character over the limit once its line end counts.
        (CsvLimits(max_line_chars=5), b"a,b\n12,34\n", 0),
        (CsvLimits(max_line_chars=5), b"a,b\r12,34\r", 0),
        (CsvLimits(max_line_chars=5), b"a,b\r\n1,34\r\n", 0),
        (CsvLimits(max_line_chars=5), b"a,b\n1,2\n12,345", 1),
    ],
)
def test_limits_are_left_to_the_reference_reader(limits, data, done) -> None:
    for size in (1, 3, 65536):
        reader = check(data, size, limits=limits)
        assert reader is not None
        assert reader.declined
        assert reader.rows_done == done


@pytest.mark.parametrize("data", [b"a,b\n1,2\n12,34", b"a,b\r\n1,2\r\n1,\r\n"])
def test_lines_at_the_limit_with_their_line_end_are_read(data) -> None:
    reader = check(data, limits=CsvLimits(max_line_chars=5))
    assert reader is not None
    assert reader.finished


@pytest.mark.parametrize("data", [b"a,b\r\n1,23\r\n", b'a,b\r\n"",2\r\n', b"a,b\r\n1,23\r"])
def test_a_crlf_split_between_two_reads_counts_in_the_line_limit(monkeypatch, data) -> None:
    # Each line is at the limit with its CR: the LF takes it over (but at the end of the file).
    for read_bytes in range(1, len(data) + 1):
        monkeypatch.setattr(fastcsv, "_READ_BYTES", read_bytes)
        reader = check(data, 1, limits=CsvLimits(max_line_chars=5))
        assert reader is not None
        assert reader.rows_done == (1 if data.endswith(b"\r") else 0)


@pytest.mark.parametrize("has_header", [True, False])
@pytest.mark.parametrize("read_bytes", [1, 2, 3, 4])
def test_a_bom_is_dropped_whatever_the_size_of_the_reads(monkeypatch, has_header, read_bytes):
    monkeypatch.setattr(fastcsv, "_READ_BYTES", read_bytes)
    reader = check(codecs.BOM_UTF8 + b"x,a\r\n1,2\r\n", 1, has_header=has_header)
    assert reader is not None
    assert reader.finished
    assert reader.rows_done == (1 if has_header else 2)


def test_a_row_whose_cr_ends_the_text_waits_for_more_unless_it_is_the_end() -> None:
    parse = fastcsv._csvblocks.parse
    assert parse(b"1,23\r", 0, False, ord(","), 2, 100, 5, 10, 10, 100)[1:] == ([], 0, 0, 0)
    assert parse(b"1,23\r", 0, True, ord(","), 2, 100, 5, 10, 10, 100)[1:] == ([1], 5, 1, 2)
    assert parse(b"1,23\r\n", 0, False, ord(","), 2, 100, 5, 10, 10, 100)[1:] == ([], 0, 0, 1)


def test_it_is_not_used_for_what_it_does_not_read() -> None:
    utf16 = codecs.BOM_UTF16_LE + "a,b\n1,2\n".encode("utf-16-le")
    assert check(utf16) is None
    assert check("a\u00a7b\n1\u00a72\n".encode(), delimiter="\u00a7") is None
    assert check(b'a,"b"x\n1,2\n') is None  # a header it would read otherwise: refused anyway


TOKENS = st.sampled_from(
    [
        b"a",
        b"1",
        b" ",
        b",",
        b";",
        b'"',
        b'""',
        b"\r",
        b"\n",
        b"\r\n",
        b"\xc3\xa9",
        b"\xff",
        b"\xc3",
        b"\x00",
        b"\xe2\x80\xa8",
        b"\x0b",
        b"\xef\xbb\xbf",
    ]
)


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    head=st.sampled_from([b"a,b\n", b"a\n", b"x,y,z\r\n", b""]),
    body=st.lists(TOKENS, max_size=60).map(b"".join),
    size=st.sampled_from([1, 2, 3, 16, 65536]),
    step=st.sampled_from([1, 2, 1000]),
    has_header=st.booleans(),
)
def test_any_input_gives_the_reference_rows_or_a_prefix_of_them(head, body, size, step, has_header):
    check(head + body, size, step, has_header=has_header)


# Rows of mostly two short values: lengths near small limits, line ends split anywhere.
VALUES = st.one_of(
    st.sampled_from([b"", b"1", b"12", b"123", b'""', b'"x"', b'"a\r\nb"', b"\xc3\xa9"]), TOKENS
)
LINE_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r", b"\r\n\r\n", b""])


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(
        st.tuples(st.lists(VALUES, min_size=1, max_size=3).map(b",".join), LINE_ENDS).map(b"".join),
        max_size=8,
    ).map(b"".join),
    size=st.integers(1, 8),
    step=st.integers(1, 4),
    read_bytes=st.integers(1, 24),
    max_field=st.integers(0, 6),
    max_line=st.integers(1, 12),
    max_rows=st.integers(1, 6),
    has_header=st.booleans(),
)
def test_small_limits_and_reads_cut_anywhere_give_the_reference_rows_or_a_prefix(
    data, size, step, read_bytes, max_field, max_line, max_rows, has_header
):
    limits = CsvLimits(max_field_bytes=max_field, max_line_chars=max_line, max_rows=max_rows)
    saved = fastcsv._READ_BYTES
    fastcsv._READ_BYTES = read_bytes
    try:
        check(b"a,b\r\n" + data, size, step, has_header=has_header, limits=limits)
    finally:
        fastcsv._READ_BYTES = saved


@settings(max_examples=examples(200), deadline=None)
@given(
    rows=st.integers(1, 4).flatmap(
        lambda width: st.lists(
            st.lists(
                st.text(
                    st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]),
                    max_size=8,
                ),
                min_size=width,
                max_size=width,
            ),
            min_size=1,
            max_size=30,
        )
    ),
    terminator=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_whatever_csv_writes_is_read_to_the_end(rows, terminator):
    width = len(rows[0])
    data = to_csv(rows, header=[f"c{i}" for i in range(width)], lineterminator=terminator)
    if any("\r" in v or "\n" in v for row in rows for v in row) or any(
        all(v == "" for v in row) and width == 1 for row in rows
    ):
        check(data)  # csv writes some of these in ways the reader refuses; compare only
        return
    reader = check(data)
    assert reader is not None, data
    assert reader.finished, data


def test_blocks_respect_the_row_and_size_bounds() -> None:
    data = to_csv(tricky_rows(2000))
    reader = FastBlocks(
        chunked(data, 65536),
        delimiter=",",
        width=len(HEADER),
        limits=CsvLimits(),
        block_rows=10,
        block_bytes=500,
    )
    assert reader.skip_header(HEADER)
    got = reader.read(1500)
    assert got is not None
    blocks, counts = got
    assert sum(counts) <= 1500
    assert max(counts) <= 10
    assert all(len(b) < 500 + 200 for b in blocks)  # closed once past 500 bytes of text
