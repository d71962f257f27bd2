"""Behaviour of the streaming CSV reader (pure Python: runs without Django)."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import pickle
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csvault.csvio.reader import CsvDataError, CsvLimits, open_csv
from tests.csvio.examples import examples
from tests.helpers import all_rows

CHUNK_SIZES = [1, 2, 3, 7, 65536]
LE = codecs.BOM_UTF16_LE
BE = codecs.BOM_UTF16_BE
U8 = codecs.BOM_UTF8


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def read_all(data: bytes, size: int = 65536, **kwargs: object) -> tuple[list[str], list[list[str]]]:
    stream = open_csv(chunked(data, size), **kwargs)  # type: ignore[arg-type]
    return stream.columns, all_rows(stream)


def error_of(data: bytes, size: int = 65536, **kwargs: object) -> CsvDataError:
    with pytest.raises(CsvDataError) as caught:
        read_all(data, size, **kwargs)
    return caught.value


# (id, data, open_csv kwargs, expected columns, expected rows)
VALID = [
    ("quoted_delimiter", b'a,b\n"x,y",z\n', {}, ["a", "b"], [["x,y", "z"]]),
    ("doubled_quotes", b'a,b\n"say ""hi""",""""\n', {}, ["a", "b"], [['say "hi"', '"']]),
    ("lf_inside_quotes", b'a,b\n"l1\nl2",z\n', {}, ["a", "b"], [["l1\nl2", "z"]]),
    ("crlf_inside_quotes", b'a,b\r\n"l1\r\nl2",z\r\n', {}, ["a", "b"], [["l1\r\nl2", "z"]]),
    ("cr_inside_quotes", b'a,b\n"l1\rl2",z\n', {}, ["a", "b"], [["l1\rl2", "z"]]),
    ("blank_line_inside_quotes", b'a,b\n"x\n\n\ny",z\n', {}, ["a", "b"], [["x\n\n\ny", "z"]]),
    (
        "non_ascii",
        "名前,città\n東京,Zürich 🎉\n".encode(),
        {},
        ["名前", "città"],
        [["東京", "Zürich 🎉"]],
    ),
    ("spaces_kept", b" a ,b\n  x , y  \n", {}, [" a ", "b"], [["  x ", " y  "]]),
    ("empty_cells", b'a,b,c\n,,\n"",x,\n', {}, ["a", "b", "c"], [["", "", ""], ["", "x", ""]]),
    (
        "formula_like_cells",
        b"a,b,c,d\n=1+2,@SUM(A1),-3,+4\n",
        {},
        ["a", "b", "c", "d"],
        [["=1+2", "@SUM(A1)", "-3", "+4"]],
    ),
    ("numbers_stay_text", b"a,b\n007,1e3\n", {}, ["a", "b"], [["007", "1e3"]]),
    ("no_final_newline", b"a,b\n1,2\n3,4", {}, ["a", "b"], [["1", "2"], ["3", "4"]]),
    ("crlf_line_ends", b"a,b\r\n1,2\r\n3,4\r\n", {}, ["a", "b"], [["1", "2"], ["3", "4"]]),
    ("cr_line_ends", b"a,b\r1,2\r3,4", {}, ["a", "b"], [["1", "2"], ["3", "4"]]),
    ("utf8_bom", U8 + b"a,b\n1,2\n", {}, ["a", "b"], [["1", "2"]]),
    ("utf8_bom_quoted_header", U8 + b'"a",b\n1,2\n', {}, ["a", "b"], [["1", "2"]]),
    (
        "utf16_le_bom",
        LE + "a,b\r\n1,é\r\n2,🎉\r\n".encode("utf-16-le"),
        {},
        ["a", "b"],
        [["1", "é"], ["2", "🎉"]],
    ),
    (
        "utf16_be_bom",
        BE + 'a,b\n1,"x\ny"\n2,🎉'.encode("utf-16-be"),
        {},
        ["a", "b"],
        [["1", "x\ny"], ["2", "🎉"]],
    ),
    ("semicolon_delimiter", b'a;b\n"1;2";3,4\n', {"delimiter": ";"}, ["a", "b"], [["1;2", "3,4"]]),
    ("tab_delimiter", b'a\tb\n"1\t2"\t3 4\n', {"delimiter": "\t"}, ["a", "b"], [["1\t2", "3 4"]]),
    ("pipe_delimiter", b"a|b\n1|2\n", {"delimiter": "|"}, ["a", "b"], [["1", "2"]]),
    (
        "no_header",
        b"1,2\n3,4\n",
        {"has_header": False},
        ["column_1", "column_2"],
        [["1", "2"], ["3", "4"]],
    ),
    (
        "no_header_single_row",
        b"x,y,z",
        {"has_header": False},
        ["column_1", "column_2", "column_3"],
        [["x", "y", "z"]],
    ),
    ("one_column", b'name\nx\n""\ny\n', {}, ["name"], [["x"], [""], ["y"]]),
    ("one_column_blank_line_skipped", b"name\nx\n\ny\n", {}, ["name"], [["x"], ["y"]]),
    ("header_only", b"a,b\n", {}, ["a", "b"], []),
    ("header_only_no_newline", b"a,b", {}, ["a", "b"], []),
    ("header_only_then_blank_lines", b"a,b\r\n\r\n\n", {}, ["a", "b"], []),
    (
        "blank_lines_skipped",
        b"\n\na,b\n\n1,2\r\n\r\n3,4\n\n",
        {},
        ["a", "b"],
        [["1", "2"], ["3", "4"]],
    ),
    # Not caught (documented): a quote that ends an unquoted value stays literal.
    ("quote_ending_an_unquoted_value", b'a,b,c\n1,b",d\n', {}, ["a", "b", "c"], [["1", 'b"', "d"]]),
    (
        "unicode_line_separators_are_data",
        "a,b\nx\vy\fz\x1c\x1d\x1e,p\x85q\u2028r\u2029s\n".encode(),
        {},
        ["a", "b"],
        [["x\vy\fz\x1c\x1d\x1e", "p\x85q\u2028r\u2029s"]],
    ),
    ("long_value", b"a,b\n" + b"x" * 20_000 + b",y\n", {}, ["a", "b"], [["x" * 20_000, "y"]]),
    (
        "value_at_field_limit",
        b"a,b\n12345,1\n",
        {"limits": CsvLimits(max_field_bytes=5)},
        ["a", "b"],
        [["12345", "1"]],
    ),
    (
        "rows_at_row_limit",
        b"a\n1\n\n2\n",
        {"limits": CsvLimits(max_rows=2)},
        ["a"],
        [["1"], ["2"]],
    ),
    (
        "columns_at_column_limit",
        b"a,b,c\n1,2,3\n",
        {"limits": CsvLimits(max_columns=3)},
        ["a", "b", "c"],
        [["1", "2", "3"]],
    ),
]


@pytest.mark.parametrize("size", CHUNK_SIZES, ids=lambda size: f"chunk{size}")
@pytest.mark.parametrize(
    ("data", "kwargs", "columns", "rows"),
    [case[1:] for case in VALID],
    ids=[case[0] for case in VALID],
)
def test_it_reads_valid_files_exactly_whatever_the_chunk_size(
    data: bytes,
    kwargs: dict[str, object],
    columns: list[str],
    rows: list[list[str]],
    size: int,
) -> None:
    assert read_all(data, size, **kwargs) == (columns, rows)


def _bad_utf16_surrogate() -> bytes:
    # A high surrogate followed by a letter instead of a low surrogate.
    return LE + "a,b\n1,".encode("utf-16-le") + b"\x00\xd8" + "x\n".encode("utf-16-le")


# (id, data, open_csv kwargs, code, row, column, line, offset)
MALFORMED = [
    ("ragged_short_row", b"a,b,c\n1,2,3\n4,5\n", {}, "ragged_row", 2, 3, 3, None),
    ("ragged_long_row", b"a,b\n1,2,3\n", {}, "ragged_row", 1, 3, 2, None),
    ("ragged_after_blank_lines", b"a,b\n\n1,2\n\n3\n", {}, "ragged_row", 2, 2, 5, None),
    ("ragged_after_multiline_value", b'a,b\n"x\ny",1\n2\n', {}, "ragged_row", 2, 2, 4, None),
    ("ragged_multiline_row_named_by_start", b'a,b\n1,"x\ny",z\n', {}, "ragged_row", 1, 3, 2, None),
    ("whitespace_only_line", b"a,b\n1,2\n  \n", {}, "ragged_row", 2, 2, 3, None),
    ("ragged_without_header", b"1,2\n3\n", {"has_header": False}, "ragged_row", 2, 2, 2, None),
    ("unterminated_quote", b'a,b\n1,"x\ny\n', {}, "unterminated_quote", 1, None, 2, None),
    (
        "unterminated_quote_names_its_opening_line",
        b'a,b,c\n"p\nq",r,"s\nt',
        {},
        "unterminated_quote",
        1,
        None,
        3,
        None,
    ),
    (
        "unterminated_quote_with_doubled_quotes",
        b'a,b\n1,2\n3,"x""y\n""\n',
        {},
        "unterminated_quote",
        2,
        None,
        3,
        None,
    ),
    ("unterminated_quote_in_header", b'a,"b\n', {}, "unterminated_quote", None, None, 1, None),
    ("text_after_closing_quote", b'a,b\n1,"x"y\n', {}, "bad_quote", 1, None, 2, None),
    ("stray_quote_inside_unquoted_value", b'a,b,c\n1,b"c,d\n', {}, "stray_quote", 1, 2, 2, 9),
    ("quote_after_space_is_a_stray_quote", b'a,b\n1, "x"\n', {}, "stray_quote", 1, 2, 2, 7),
    ("stray_quote_in_header", b'a,b"c\n1,2\n', {}, "stray_quote", None, 2, 1, 3),
    (
        "stray_quote_after_a_multiline_value",
        b'a,b\n1,"two\nlines"\n2,x"y\n',
        {},
        "stray_quote",
        2,
        2,
        4,
        21,
    ),
    ("space_after_closing_quote", b'a,b\n1,2\n"x" ,1\n', {}, "bad_quote", 2, None, 3, None),
    ("invalid_utf8", b"a,b\n1,\xff\n", {}, "invalid_utf8", 1, None, 2, 6),
    ("invalid_utf8_continuation", b"a,b\n1,\xe2\x28\xa1\n", {}, "invalid_utf8", 1, None, 2, 6),
    ("utf8_encoded_surrogate", b"a,b\n1,\xed\xa0\x80\n", {}, "invalid_utf8", 1, None, 2, 6),
    ("truncated_utf8_at_end", b"a,b\n1,\xe2\x82", {}, "invalid_utf8", 1, None, 2, 6),
    ("invalid_utf8_offset_counts_bom", U8 + b"a,b\n1,\xff\n", {}, "invalid_utf8", 1, None, 2, 9),
    ("invalid_utf8_in_header", b"a\xff,b\n1,2\n", {}, "invalid_utf8", None, None, 1, 1),
    ("invalid_utf8_after_lone_cr", b"a,b\r1,2\r\xff", {}, "invalid_utf8", 2, None, 3, 8),
    (
        "invalid_utf8_latin1_file",
        "a,b\n1,café\n".encode("latin-1"),
        {},
        "invalid_utf8",
        1,
        None,
        2,
        9,
    ),
    ("nul_byte", b"a,b\n1,x\0y\n", {}, "nul_byte", 1, None, 2, 7),
    ("nul_byte_in_header", b"name,val\0ue\nx,y\n", {}, "nul_byte", None, None, 1, 8),
    ("nul_byte_after_lone_cr", b"a,b\r1,2\r\0", {}, "nul_byte", 2, None, 3, 8),
    ("nul_byte_in_quoted_value", b'a,b\n1,"x\ny\0"\n', {}, "nul_byte", 1, None, 3, 10),
    ("nul_byte_utf16", LE + "a,b\n1,\0\n".encode("utf-16-le"), {}, "nul_byte", 1, None, 2, 14),
    ("invalid_utf16_surrogate", _bad_utf16_surrogate(), {}, "invalid_utf16", 1, None, 2, 14),
    (
        "truncated_utf16",
        LE + "a,b\n1,2".encode("utf-16-le") + b"\x33",
        {},
        "invalid_utf16",
        1,
        None,
        2,
        16,
    ),
    (
        "utf16_le_without_bom",
        "a,b\n1,2\n".encode("utf-16-le"),
        {},
        "utf16_without_bom",
        None,
        None,
        None,
        None,
    ),
    (
        "utf16_be_without_bom",
        "a,b\n1,2\n".encode("utf-16-be"),
        {},
        "utf16_without_bom",
        None,
        None,
        None,
        None,
    ),
    ("empty_file", b"", {}, "empty_file", None, None, None, None),
    ("only_blank_lines", b"\n\r\n\n", {}, "empty_file", None, None, None, None),
    ("only_a_bom", U8, {}, "empty_file", None, None, None, None),
    ("empty_file_without_header", b"", {"has_header": False}, "empty_file", None, None, None, None),
    ("no_header_name_at_all", b"\n\n , ,\n", {}, "empty_header", None, 1, 3, None),
    (
        "value_under_dropped_column",
        b"a,b,,\n1,2,,\n3,4,,5\n",
        {},
        "value_in_unnamed_column",
        2,
        4,
        3,
        None,
    ),
    (
        "too_many_columns",
        b"a,b,c,d\n",
        {"limits": CsvLimits(max_columns=3)},
        "too_many_columns",
        None,
        4,
        1,
        None,
    ),
    (
        "too_many_columns_without_header",
        b"1,2,3,4\n",
        {"has_header": False, "limits": CsvLimits(max_columns=3)},
        "too_many_columns",
        1,
        4,
        1,
        None,
    ),
    (
        "too_many_rows",
        b"a\n1\n\n2\n3\n",
        {"limits": CsvLimits(max_rows=2)},
        "too_many_rows",
        3,
        None,
        5,
        None,
    ),
    (
        "too_many_rows_without_header",
        b"1\n2\n",
        {"has_header": False, "limits": CsvLimits(max_rows=1)},
        "too_many_rows",
        2,
        None,
        2,
        None,
    ),
    (
        "field_too_large",
        b"a,b\n1,123456\n",
        {"limits": CsvLimits(max_field_bytes=5)},
        "field_too_large",
        1,
        None,
        2,
        None,
    ),
    (
        "quoted_field_too_large",
        b'a,b\n1,"12\n34\n56"\n',
        {"limits": CsvLimits(max_field_bytes=5)},
        "field_too_large",
        1,
        None,
        3,
        None,
    ),
    (
        "line_too_long",
        b"a,b\n1,2\n12345,678901\n3,4\n",
        {"limits": CsvLimits(max_line_chars=10)},
        "line_too_long",
        2,
        None,
        3,
        None,
    ),
    (
        "unterminated_line_too_long",
        b"a,b\n1,2\n12345,678901",
        {"limits": CsvLimits(max_line_chars=10)},
        "line_too_long",
        2,
        None,
        3,
        None,
    ),
    ("ragged_row_before_invalid_utf8", b"a,b\n1\n\xff\n", {}, "ragged_row", 1, 2, 2, None),
    ("invalid_utf8_before_ragged_row", b"a,b\n\xff\n1\n", {}, "invalid_utf8", 1, None, 2, 4),
]


@pytest.mark.parametrize("size", [1, 3, 7, 65536], ids=lambda size: f"chunk{size}")
@pytest.mark.parametrize(
    ("data", "kwargs", "code", "row", "column", "line", "offset"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_it_reports_what_is_wrong_and_where(
    data: bytes,
    kwargs: dict[str, object],
    code: str,
    row: int | None,
    column: int | None,
    line: int | None,
    offset: int | None,
    size: int,
) -> None:
    error = error_of(data, size, **kwargs)
    assert (error.code, error.row, error.column, error.line, error.offset) == (
        code,
        row,
        column,
        line,
        offset,
    )
    assert error.message.endswith(".")


def test_it_yields_the_rows_before_a_problem() -> None:
    stream = open_csv([b"a,b\n1,2\n3,4\n5\n"])
    assert stream.read_rows(1) == [["1", "2"]]
    assert stream.read_rows(1) == [["3", "4"]]
    with pytest.raises(CsvDataError, match="Row 3"):
        stream.read_rows(1)


def test_it_names_the_row_of_a_ragged_row() -> None:
    data = b"a,b,c,d\n" + b"1,2,3,4\n" * 16 + b"1,2,3,4,5\n"
    error = error_of(data)
    assert error.message == "Row 17 (line 18) has 5 fields; expected 4 like the header."


def test_it_names_the_first_row_when_there_is_no_header() -> None:
    error = error_of(b"1,2\n3\n", has_header=False)
    assert error.message == "Row 2 (line 2) has 1 field; expected 2 like the first row."


def test_it_names_an_unnamed_header_column_by_its_position_with_a_warning() -> None:
    # R's write.csv: an unnamed row-name column first.
    stream = open_csv([b'"","x","column_1"\n"1",2,3\n'])
    assert stream.columns == ["column_1", "x", "column_1_2"]
    assert stream.header_as_read == ["", "x", "column_1"]
    assert all_rows(stream) == [["1", "2", "3"]]
    assert [w["code"] for w in stream.warnings] == ["unnamed_columns", "duplicate_header"]
    assert stream.warnings[0]["columns"] == [1]


def test_it_drops_empty_columns_at_the_end_of_the_header_with_a_warning() -> None:
    # Excel's habit: a header and rows with trailing delimiters; rows may also stop early.
    data = b"a,b,,\r\n1,2,,\r\n3,4\r\n5,6,\r\n"
    for size in CHUNK_SIZES:
        stream = open_csv(chunked(data, size))
        assert stream.columns == ["a", "b"]
        assert all_rows(stream) == [["1", "2"], ["3", "4"], ["5", "6"]]
        assert [w["code"] for w in stream.warnings] == ["empty_columns_dropped"]
        assert stream.warnings[0]["columns"] == [3, 4]


def test_a_value_under_a_dropped_column_fails_with_its_place() -> None:
    error = error_of(b"a,b,\n1,2,\n3,4,x\n")
    assert (error.code, error.row, error.column, error.line) == ("value_in_unnamed_column", 2, 3, 3)
    assert error.message.startswith("Row 2 (line 3) has a value in column 3, which has no name")


def test_rows_wider_than_the_header_with_dropped_columns_are_ragged() -> None:
    assert error_of(b"a,b,\n1,2,,\n").code == "ragged_row"


def test_it_makes_repeated_header_names_unique_with_a_warning() -> None:
    stream = open_csv([b"id,amount,x,amount_2,amount,id\n1,2,3,4,5,6\n"])
    assert stream.columns == ["id", "amount", "x", "amount_2", "amount_3", "id_2"]
    assert stream.header_as_read == ["id", "amount", "x", "amount_2", "amount", "id"]
    assert all_rows(stream) == [["1", "2", "3", "4", "5", "6"]]
    (warning,) = stream.warnings
    assert warning["code"] == "duplicate_header"
    assert warning["columns"] == [
        {"column": 5, "name": "amount", "renamed": "amount_3", "same_as": 2},
        {"column": 6, "name": "id", "renamed": "id_2", "same_as": 1},
    ]
    assert "'amount'" in str(warning["message"])  # warnings are stored encrypted


def test_it_compares_header_names_exactly() -> None:
    assert read_all(b"a,a ,A\n1,2,3\n")[0] == ["a", "a ", "A"]


def test_it_gives_the_byte_offset_and_line_of_invalid_utf8() -> None:
    error = error_of(b"a,b\n1,2\n3,\xff\n")
    assert error.message.startswith("Invalid UTF-8 at byte offset 10 (line 3, row 2).")


@pytest.mark.parametrize(
    "bad",
    [b"\xff", b"\xc3(", b"\xe2\x28\xa1", b"\xf0\x9f\x98x", b"\xed\xa0\x80", b"\xc0\xaf"],
    ids=["invalid_start", "bad_2nd_byte", "bad_3byte", "short_4byte", "surrogate", "overlong"],
)
def test_it_finds_the_exact_offset_of_invalid_utf8_across_chunk_boundaries(bad: bytes) -> None:
    for prefix_length in range(12, 22):
        # Multi-byte characters before the bad bytes put them at every position
        # relative to both the chunk and the character boundaries.
        prefix = ("h\n" + "é" * 8 + "x" * 20).encode()[:prefix_length]
        prefix = prefix.decode(errors="ignore").encode()
        data = prefix + bad + b"tail\n"
        for size in [1, 2, 3, 4, 5, 7, 8, 13, 16, 65536]:
            error = error_of(data, size)
            assert (error.code, error.offset) == ("invalid_utf8", len(prefix)), (prefix, size)
            assert error.line == 2


@pytest.mark.parametrize("size", [1, 7, 8192, 65536], ids=lambda size: f"chunk{size}")
def test_it_names_the_line_where_an_unclosed_quote_opened_far_from_the_end(size: int) -> None:
    # The unclosed value is 50 lines of doubled quotes: exactly the field size
    # limit in characters, twice that in the file.
    data = b"a,b\n" + b'"""",""""\n' * 3000 + b'3,"' + (b'""' * 99 + b"\n") * 50
    error = error_of(data, size, limits=CsvLimits(max_field_bytes=5000))
    assert (error.code, error.row, error.line) == ("unterminated_quote", 3001, 3002)


def test_it_finds_the_exact_offset_of_a_nul_across_chunk_boundaries() -> None:
    for prefix_length in range(10, 20):
        prefix = ("h\n" + "é" * 8 + "x" * 20).encode()[:prefix_length]
        prefix = prefix.decode(errors="ignore").encode()
        for size in [1, 2, 3, 4, 7, 65536]:
            error = error_of(prefix + b"\0\n", size)
            assert (error.code, error.offset, error.line) == ("nul_byte", len(prefix), 2)


@pytest.mark.parametrize(
    "delimiter", ["", ",,", '"', "\r", "\n", "\0"], ids=["empty", "two", "quote", "cr", "lf", "nul"]
)
def test_it_refuses_a_delimiter_that_cannot_work(delimiter: str) -> None:
    with pytest.raises(CsvDataError) as caught:
        open_csv([b"a,b\n"], delimiter=delimiter)
    assert caught.value.code == "invalid_delimiter"


def test_it_refuses_a_bad_delimiter_before_reading_anything() -> None:
    def chunks() -> Iterator[bytes]:
        raise AssertionError("read")
        yield b""  # pragma: no cover

    with pytest.raises(CsvDataError):
        open_csv(chunks(), delimiter="")


def test_it_reads_lazily_and_reports_bytes_consumed() -> None:
    pulled = 0

    def endless() -> Iterator[bytes]:
        nonlocal pulled
        yield b"n,sq\n"
        for i in itertools.count():
            pulled += 1
            yield f"{i},{i * i}\n".encode()

    stream = open_csv(endless())
    assert stream.columns == ["n", "sq"]
    rows = stream.read_rows(1000)
    assert rows[-1] == ["999", "998001"]
    assert pulled <= 1010
    assert stream.bytes_consumed == sum(len(f"{i},{i * i}\n") for i in range(pulled)) + 5


def test_it_counts_every_input_byte_by_the_end() -> None:
    data = U8 + b"a,b\n" + b"1,2\n" * 5000
    stream = open_csv(chunked(data, 4096))
    assert stream.bytes_consumed <= 4096
    assert len(all_rows(stream)) == 5000
    assert stream.bytes_consumed == len(data)


def test_it_buffers_the_first_row_when_there_is_no_header() -> None:
    stream = open_csv([b"x,y\n", b"z,w\n"], has_header=False)
    assert stream.columns == ["column_1", "column_2"]
    assert all_rows(stream) == [["x", "y"], ["z", "w"]]


def test_it_accepts_any_bytes_like_chunks() -> None:
    chunks = [memoryview(b"a,b\n1,"), bytearray(b"\xc3"), memoryview(b"\xa9\n")]
    stream = open_csv(chunks)
    assert (stream.columns, all_rows(stream)) == (["a", "b"], [["1", "é"]])


def test_it_reports_the_encoding_it_used() -> None:
    assert open_csv([b"a\n"]).encoding == "utf-8"
    assert open_csv([LE + "a\n".encode("utf-16-le")]).encoding == "utf-16-le"
    assert open_csv([BE + "a\n".encode("utf-16-be")]).encoding == "utf-16-be"


def test_it_sets_the_field_size_limit() -> None:
    open_csv([b"a\n"], limits=CsvLimits(max_field_bytes=4321))
    assert csv.field_size_limit() == 4321
    open_csv([b"a\n"])
    assert csv.field_size_limit() == 1_048_576


def test_its_error_serialises_with_every_key() -> None:
    error = error_of(b"a,b\n1\n")
    assert error.as_dict() == {
        "code": "ragged_row",
        "message": "Row 1 (line 2) has 1 field; expected 2 like the header.",
        "row": 1,
        "column": 2,
        "line": 2,
        "offset": None,
    }
    assert str(error) == error.message
    assert pickle.loads(pickle.dumps(error)).as_dict() == error.as_dict()


# csv.writer in Python 3.11 quotes only the characters of its own line
# terminator: with "\n", a value holding a bare CR is written unquoted and
# would split the row for any reader, so those values leave CR out.
_SPECIAL = st.sampled_from([",", '"', "\r", "\n", " ", "\x85", "\u2028", "\v", "é", "🎉"])
_ANY = st.characters(codec="utf-8", exclude_characters="\0")
_TEXT_WITH_CR = st.text(st.one_of(_SPECIAL, _ANY), max_size=12)
_TEXT_WITHOUT_CR = st.text(st.one_of(_SPECIAL, _ANY).filter(lambda c: c != "\r"), max_size=12)
_ENCODINGS = {
    "utf-8": lambda text: text.encode(),
    "utf-8 with BOM": lambda text: U8 + text.encode(),
    "utf-16-le with BOM": lambda text: LE + text.encode("utf-16-le"),
    "utf-16-be with BOM": lambda text: BE + text.encode("utf-16-be"),
}


@st.composite
def _table(draw: st.DrawFn) -> tuple[str, list[list[str]]]:
    terminator = draw(st.sampled_from(["\r\n", "\n"]))
    text = _TEXT_WITH_CR if terminator == "\r\n" else _TEXT_WITHOUT_CR
    width = draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(text, min_size=width, max_size=width), min_size=1, max_size=8))
    return terminator, rows


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=_table(),
    cuts=st.lists(st.integers(0, 400), max_size=10),
    encoding=st.sampled_from(sorted(_ENCODINGS)),
)
def test_it_reads_back_exactly_what_csv_writer_wrote(
    table: tuple[str, list[list[str]]], cuts: list[int], encoding: str
) -> None:
    terminator, rows = table
    out = io.StringIO()
    csv.writer(out, lineterminator=terminator).writerows(rows)
    data = _ENCODINGS[encoding](out.getvalue())
    bounds = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    chunks = [data[start:end] for start, end in itertools.pairwise(bounds)]
    stream = open_csv(chunks, has_header=False)
    assert len(stream.columns) == len(rows[0])
    assert all_rows(stream) == rows


# --- read_rows gives the same rows and errors whatever the number asked for ---


def read_batches(
    data: bytes, batch: int, size: int = 65536, **kwargs: object
) -> tuple[list[list[list[str]]], CsvDataError | None]:
    """Every batch yielded before the end or the first problem, and that problem."""
    got: list[list[list[str]]] = []
    try:
        stream = open_csv(chunked(data, size), **kwargs)  # type: ignore[arg-type]
        while rows := stream.read_rows(batch):
            got.append(rows)
    except CsvDataError as exc:
        return got, exc
    return got, None


def one_by_one(data: bytes, size: int = 65536, **kwargs: object) -> tuple[list[list[str]], object]:
    """The rows read one at a time before the end or the first problem, and that problem."""
    batches, error = read_batches(data, 1, size, **kwargs)
    assert all(len(rows) == 1 for rows in batches)
    return [rows[0] for rows in batches], error.as_dict() if error else None


@pytest.mark.parametrize("batch", [2, 3, 1000, 4096])
@pytest.mark.parametrize(
    ("data", "kwargs"),
    [(case[1], case[2]) for case in VALID + MALFORMED],
    ids=[str(case[0]) for case in VALID + MALFORMED],
)
def test_read_rows_gives_the_same_rows_and_errors_whatever_the_limit(
    data: bytes, kwargs: dict[str, object], batch: int
) -> None:
    batches, error = read_batches(data, batch, 3, **kwargs)
    assert all(0 < len(rows) <= batch for rows in batches)
    flat = [row for rows in batches for row in rows]
    assert (flat, error.as_dict() if error else None) == one_by_one(data, 3, **kwargs)


def test_read_rows_drops_blank_lines_but_never_returns_an_empty_batch() -> None:
    data = b"a,b\n" + b"1,2\n\n" * 2 + b"\n\n\n\n3,4\n"
    batches, error = read_batches(data, 4)
    assert error is None
    # A blank line takes a place in the batch it was read in; 4 blanks give no batch.
    assert [len(rows) for rows in batches] == [2, 1]


def test_read_rows_names_the_line_of_a_bad_row_deep_in_a_batch() -> None:
    data = b'a,b\n1,2\n\n"x\ny",3\r\n4,5\r6,7\n\n\n8\n9,9\n'
    batches, error = read_batches(data, 1000)
    assert [row for rows in batches for row in rows] == [
        ["1", "2"], ["x\ny", "3"], ["4", "5"], ["6", "7"]
    ]  # fmt: skip
    assert error is not None
    assert (error.code, error.row, error.line, error.column) == ("ragged_row", 5, 10, 2)


def test_read_rows_refuses_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="positive"):
        open_csv([b"a\n1\n"]).read_rows(0)


_CELL = st.sampled_from(["x", "", "é", '"q"', "a,b", "l1\nl2", "l1\r\nl2", "🎉"])


@st.composite
def _messy_file(draw: st.DrawFn) -> bytes:
    """A CSV with blank lines, multi-line values, ragged rows and mixed line ends."""
    width = draw(st.integers(1, 3))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f"c{i}" for i in range(width)])
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["row", "row", "row", "blank", "ragged"]))
        if kind == "blank":
            out.write(draw(st.sampled_from(["\n", "\r\n"])))
            continue
        cells = width if kind == "row" else draw(st.integers(1, 4).filter(lambda n: n != width))
        writer.writerow(draw(st.lists(_CELL, min_size=cells, max_size=cells)))
    return out.getvalue().encode()


def python_csv_reading(
    data: bytes, max_rows: int, has_header: bool = True
) -> tuple[list[list[str]], tuple[str, int] | None]:
    """What Python's csv module makes of a messy file under csvault's rules (blank lines
    skipped, every row as wide as the first, at most ``max_rows``): the rows, and the
    (code, row) of the first problem. An oracle independent of the reader's batching."""
    lines = [r for r in csv.reader(io.StringIO(data.decode(), newline=""), strict=True) if r]
    width = len(lines[0])
    body = lines[1:] if has_header else lines
    rows: list[list[str]] = []
    for number, row in enumerate(body, start=1):
        if len(row) != width:
            return rows, ("ragged_row", number)
        if number > max_rows:
            return rows, ("too_many_rows", number)
        rows.append(row)
    return rows, None


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_messy_file(), batch=st.integers(1, 5), max_rows=st.integers(1, 8))
def test_read_rows_matches_python_csv_on_messy_files(
    data: bytes, batch: int, max_rows: int
) -> None:
    kwargs = {"limits": CsvLimits(max_rows=max_rows)}
    batches, error = read_batches(data, batch, 5, **kwargs)
    flat = [row for rows in batches for row in rows]
    assert (flat, error.as_dict() if error else None) == one_by_one(data, 5, **kwargs)
    assert (flat, (error.code, error.row) if error else None) == python_csv_reading(data, max_rows)


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=_messy_file(),
    limits=st.lists(st.integers(1, 4), min_size=1, max_size=5),
    has_header=st.booleans(),
)
def test_read_rows_with_changing_limits_matches_one_by_one(
    data: bytes, limits: list[int], has_header: bool
) -> None:
    stream = open_csv(chunked(data, 4), has_header=has_header)
    got: list[list[str]] = []
    error = None
    try:
        for limit in itertools.cycle(limits):
            rows = stream.read_rows(limit)
            assert len(rows) <= limit
            if not rows:
                break
            got.extend(rows)
    except CsvDataError as exc:
        error = exc.as_dict()
        with pytest.raises(CsvDataError):  # and again on every later call
            stream.read_rows(1)
    assert (got, error) == one_by_one(data, 4, has_header=has_header)


@pytest.mark.parametrize(
    ("data", "delimiter"),
    [
        (b"a,b\n" + b"1,2\n" * 20 + b'3,b"c\n', ","),
        (b"a,b\n" + b'1,"x"\n' * 10 + b'3,bb"c\n', ","),
        (b"a;b\n" + b'1;"x;y"\n' * 12 + b'3;b"c\n', ";"),
    ],
)
def test_a_stray_quote_is_found_wherever_the_chunks_are_cut(data, delimiter):
    # The scan looks at a quote's neighbours, which may lie in other chunks.
    for cut in range(1, len(data)):
        for cut2 in range(cut, min(cut + 4, len(data))):
            for cut3 in range(cut2, min(cut2 + 3, len(data))):
                pieces = [
                    p for p in (data[:cut], data[cut:cut2], data[cut2:cut3], data[cut3:]) if p
                ]
                with pytest.raises(CsvDataError) as caught:
                    all_rows(open_csv(pieces, delimiter=delimiter))
                assert (caught.value.code, caught.value.column) == ("stray_quote", 2), pieces


def test_a_long_line_full_of_quote_candidates_fails_in_linear_time():
    # Each buffer's first candidate is judged on its whole line; a line made of
    # candidates must not make the scan quadratic.
    data = b"a,b\n1," + b'"a"b' * 2_000_000 + b"\n"
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    started = time.process_time()
    with pytest.raises(CsvDataError) as caught:
        all_rows(open_csv(chunks))
    assert caught.value.code == "bad_quote"
    assert time.process_time() - started < 5
