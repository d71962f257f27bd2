"""The pure formatting of exports: formula neutralisation, CSV lines, JSON lines, file names."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csvault.datasets.export import (
    ExportFormat,
    content_disposition,
    csv_lines,
    export_filename,
    jsonl_lines,
    neutralise_cell,
    utf8_chunks,
)

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def parse_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+2", "'=1+2"),
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+44 20", "'+44 20"),
        ("-3-4", "'-3-4"),
        (" =1", "' =1"),
        ("  -A1", "'  -A1"),
        ("\uff1dSUM(A1)", "'\uff1dSUM(A1)"),
        ("\u3000\uff0b1", "'\u3000\uff0b1"),
        ("-", "'-"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\rx", "'\rx"),
        ("=", "'="),
        ("'=1", "'=1"),  # already starts with a quote: not a formula
    ],
)
def test_formula_cells_get_a_leading_quote(value, expected):
    assert neutralise_cell(value) == expected


@pytest.mark.parametrize(
    "value",
    ["1-2", "a=b", "", "'x", "plain", "\n=1", "3", "東京", "-3", "-489.86", "+1.5e3", "-.5", " "],
)
def test_safe_cells_are_unchanged(value):
    assert neutralise_cell(value) == value


def test_csv_lines_writes_the_neutralised_header_then_rfc4180_records():
    lines = list(csv_lines(["id", "=col"], [["1", 'say "hi", ok'], ["-2", "line\nbreak"]]))
    assert lines == [
        "id,'=col\r\n",
        '1,"say ""hi"", ok"\r\n',
        '-2,"line\nbreak"\r\n',
    ]


def test_csv_lines_of_no_rows_is_the_header_alone():
    assert list(csv_lines(["a", "b"], [])) == ["a,b\r\n"]


def test_a_single_empty_cell_stays_distinguishable_from_a_blank_line():
    data = "".join(csv_lines(["a"], [[""], ["x"]])).encode()
    assert parse_csv(data) == [["a"], [""], ["x"]]


def test_jsonl_lines_keep_values_exactly_and_break_lines_only_between_records():
    values = ["=1+2", "line\u2028sep\u2029para\x85nel", "naïve 🙂", "", "a\nb\rc"]
    columns = ["c1", "c2", "c3", "c4", "c5"]
    text = "".join(jsonl_lines(columns, [(1, values), (2, ["x"] * 5)]))
    assert not text.isascii()  # ensure_ascii=False
    lines = text.splitlines()  # str.splitlines splits on U+2028, U+2029, U+0085 too
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first == {"row": 1, "data": dict(zip(columns, values, strict=True))}
    assert list(first["data"]) == columns
    assert json.loads(lines[1])["row"] == 2


def test_utf8_chunks_end_at_line_boundaries():
    lines = [f"{i},é\r\n" for i in range(1000)]
    chunks = list(utf8_chunks(lines, chunk_chars=100))
    assert len(chunks) > 10
    assert all(chunk.endswith(b"\r\n") for chunk in chunks)
    assert b"".join(chunks) == "".join(lines).encode()
    assert list(utf8_chunks([])) == []


@pytest.mark.parametrize(
    ("name", "export_format", "expected"),
    [
        ("données été.csv", ExportFormat.CSV, "données été.csv"),
        ("données été.csv", ExportFormat.JSONL, "données été.jsonl"),
        ("report.2024", ExportFormat.CSV, "report.2024.csv"),
        ("../../etc/passwd", ExportFormat.CSV, "_.._etc_passwd.csv"),
        ("a\\b/c.CSV", ExportFormat.CSV, "a_b_c.csv"),
        ("evil\u202etxt.csv", ExportFormat.CSV, "eviltxt.csv"),
        ("new\r\nline\x00.csv", ExportFormat.CSV, "newline.csv"),
        ("  ...  ", ExportFormat.CSV, "dataset.csv"),
        ("", ExportFormat.JSONL, "dataset.jsonl"),
        ("x" * 300, ExportFormat.CSV, "x" * 150 + ".csv"),
    ],
)
def test_export_filename(name, export_format, expected):
    assert export_filename(name, export_format) == expected


@pytest.mark.parametrize(
    ("filename", "fallback"),
    [
        ("données été.csv", "donnees ete.csv"),
        ("plain.csv", "plain.csv"),
        ('say "hi"; x=1,y.csv', "say _hi__ x_1_y.csv"),
        ("東京.jsonl", "dataset.jsonl"),
        ("a\\b.csv", "a_b.csv"),
    ],
)
def test_content_disposition_has_an_ascii_fallback_and_the_exact_name(filename, fallback):
    value = content_disposition(filename)
    assert value.isascii()
    prefix = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''"
    assert value.startswith(prefix)
    encoded = value[len(prefix) :]
    # RFC 8187 attr-chars only, percent-encoded UTF-8 for everything else.
    assert all(ch.isalnum() or ch in "%!#$&+-.^_`|~" for ch in encoded)
    assert unquote(encoded, encoding="utf-8", errors="strict") == filename


# Cells of arbitrary text, with the trigger characters and CSV specials made likely.
cell = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from([*TRIGGERS, '"', ",", "\n", "'", "a", " ", "é"])),
)


@st.composite
def tables(draw):
    width = draw(st.integers(min_value=1, max_value=6))
    columns = draw(st.lists(cell, min_size=width, max_size=width))
    rows = draw(st.lists(st.lists(cell, min_size=width, max_size=width), max_size=20))
    return columns, rows


@given(tables())
def test_csv_output_parses_back_to_the_neutralised_cells(table):
    columns, rows = table
    data = b"".join(utf8_chunks(csv_lines(columns, rows), chunk_chars=64))
    assert not data.startswith(b"\xef\xbb\xbf")
    parsed = parse_csv(data)
    assert parsed == [[neutralise_cell(v) for v in row] for row in [columns, *rows]]
    assert not any(v.startswith(TRIGGERS) for row in parsed for v in row)


@given(tables(), st.integers(min_value=1, max_value=2**63))
def test_jsonl_lines_are_json_dumps_of_each_row(table, first):
    columns, rows = table
    columns = list(dict.fromkeys(columns))  # csvault's column names are unique
    rows = [row[: len(columns)] for row in rows]
    numbered = list(enumerate(rows, start=first))
    text = "".join(jsonl_lines(columns, numbered))
    lines = text.splitlines()
    assert len(lines) == len(rows)
    assert text == "".join(line + "\n" for line in lines)
    for line, (n, row) in zip(lines, numbered, strict=True):
        expected = {"row": n, "data": dict(zip(columns, row, strict=True))}
        assert json.loads(line) == expected
        dumped = json.dumps(expected, ensure_ascii=False, separators=(",", ":"))
        assert line == dumped.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace(
            "\x85", "\\u0085"
        )


def test_jsonl_lines_refuse_a_row_of_the_wrong_width():
    with pytest.raises(ValueError, match="row 3 has 1 values for 2 columns"):
        list(jsonl_lines(["a", "b"], [(3, ["x"])]))
