"""Encoding and delimiter detection, the upload options, and the transcoding that feeds
the C fast path (which must read exactly what the reference reader reads)."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csvault.csvio.detect import (
    SAMPLE_BYTES,
    Probe,
    consistent_delimiter,
    delimiter_option,
    detect,
    detect_delimiter,
    detect_encoding,
    encoding_option,
)
from csvault.csvio.errors import CsvDataError
from csvault.csvio.fastcsv import FAST_AVAILABLE, open_fast_blocks
from csvault.csvio.limits import DEFAULT_LIMITS
from csvault.csvio.reader import open_csv
from csvault.csvio.sniff import not_text_reason
from csvault.csvio.tail import Tail
from csvault.csvio.transcode import Undecodable, Utf8Chunks
from tests.csvio.test_fastcsv import grid_rows

TEXT = "name;city\r\nJosé;Köln\r\nZoë;Zürich\r\n"


@pytest.mark.parametrize(
    ("raw", "encoding"),
    [
        (codecs.BOM_UTF8 + TEXT.encode(), "utf-8"),
        (codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), "utf-16-le"),
        (codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), "utf-16-be"),
        (codecs.BOM_UTF32_LE + TEXT.encode("utf-32-le"), "utf-32-le"),
        (codecs.BOM_UTF32_BE + TEXT.encode("utf-32-be"), "utf-32-be"),
        (TEXT.encode("utf-16-le"), "utf-16-le"),
        (TEXT.encode("utf-16-be"), "utf-16-be"),
        (TEXT.encode("utf-32-le"), "utf-32-le"),
        (TEXT.encode(), "utf-8"),
        (b"a,b\n1,2\n", "utf-8"),
        (TEXT.encode("cp1252"), "cp1252"),
        ("имя;город\nИван;Москва\nПётр;Санкт-Петербург\n".encode("cp1251"), "cp1251"),
        ("nom,prix\nCrème brûlée,5\nPâté,3\n".encode("cp1252"), "cp1252"),
        ("a,b\n1,é\n".encode("cp1252"), "cp1252"),
        (
            "imie,miasto\nŁukasz Wąsowski,Łódź\nZażółć gęślą jaźń,Kraków\n".encode("cp1250"),
            "cp1250",
        ),
    ],
)
def test_the_encoding_is_detected_from_the_bytes(raw: bytes, encoding: str) -> None:
    assert detect_encoding(raw, final=True) == encoding
    assert not_text_reason(raw[:8192]) is None  # and the upload takes it


def test_a_character_cut_by_the_end_of_the_sample_is_still_utf8() -> None:
    raw = ("x" * 10 + "é").encode()
    assert detect_encoding(raw[:-1], final=False) == "utf-8"
    assert detect_encoding(raw[:-1], final=True) != "utf-8"


def test_a_late_non_utf8_byte_switches_the_probe_to_a_legacy_encoding() -> None:
    raw = b"name,city\n" + b"plain,ascii\n" * (SAMPLE_BYTES // 10) + "José,Köln\n".encode("cp1252")
    probe = Probe()
    assert b"".join(probe.watch([raw[i : i + 1000] for i in range(0, len(raw), 1000)])) == raw
    found = probe.result()
    assert (found.encoding, found.encoding_detected) == ("cp1252", True)
    assert (found.delimiter, found.delimiter_detected) == (",", True)


def test_utf8_text_with_one_bad_byte_later_stays_utf8() -> None:
    # Read as cp1252 it would complete as mojibake; as UTF-8 the ingest names the byte.
    raw = ("José,Zürich\n" * 8000).encode() + b"Ren\xe9,Paris\n"
    probe = Probe()
    list(probe.watch([raw[i : i + 65536] for i in range(0, len(raw), 65536)]))
    assert probe.result().encoding == "utf-8"


def test_a_utf8_byte_order_mark_keeps_utf8_whatever_follows() -> None:
    raw = codecs.BOM_UTF8 + b"a,b\n" + b"1,2\n" * SAMPLE_BYTES + b"3,\xff\n"
    probe = Probe()
    for _ in probe.watch([raw]):
        pass
    assert probe.result().encoding == "utf-8"  # the ingest then fails on the bad byte


def test_given_options_are_kept_and_not_marked_detected() -> None:
    found = detect(TEXT.encode("utf-16-le"), final=True, encoding="utf-16", delimiter=",")
    assert found.encoding == "utf-16-le"
    assert not found.encoding_detected
    assert found.delimiter == ","
    assert not found.delimiter_detected


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("a,b,c\n1,2,3\n", ","),
        ("a;b;c\n1;2,5;3\n4;5,5;6\n", ";"),  # decimal commas do not fool it
        ("a\tb\n1\tx, y, z\n2\tw\n", "\t"),
        ("a|b\n1|2\n", "|"),
        ('a,b\n"x;y;z",2\n"p;q",3\n', ","),  # quoted delimiters are values
        ("Name;Betrag;Datum\n", ";"),  # a header alone: the widest split
        ("single\n1\n2\n", None),
    ],
)
def test_the_delimiter_is_the_one_that_splits_rows_like_the_header(text, delimiter) -> None:
    assert detect_delimiter(text, final=True) == delimiter


def test_the_hint_names_another_delimiter_only_when_it_reads_every_row_alike() -> None:
    assert consistent_delimiter("a;b\n1;2,5\n", final=True, used=",") == ";"
    assert consistent_delimiter("a;b\n1;2\n3\n", final=True, used=",") is None
    assert consistent_delimiter("a,b\n1,2\n", final=True, used=",") is None


@pytest.mark.parametrize(
    ("given", "stored"),
    [(None, ""), ("", ""), ("detect", ""), ("tab", "\t"), ("TAB", "\t"), ("\\t", "\t"),
     ("\t", "\t"), (";", ";"), (" ", " ")],
)  # fmt: skip
def test_delimiter_options(given, stored) -> None:
    assert delimiter_option(given) == stored


@pytest.mark.parametrize(
    ("given", "stored"),
    [("", ""), ("UTF8", "utf-8"), ("utf-8-sig", "utf-8"), ("UTF-16", "utf-16"),
     ("utf-16le", "utf-16-le"), ("Windows-1252", "cp1252"), ("latin1", "iso8859-1"),
     ("ISO-8859-15", "iso8859-15"), ("koi8-r", "koi8-r")],
)  # fmt: skip
def test_encoding_options(given, stored) -> None:
    assert encoding_option(given) == stored


@pytest.mark.parametrize(
    "given",
    ["klingon", "shift_jis", "utf-7", "cp037", "base64", "rot13", "iso2022_jp", "unicode-escape",
     "raw-unicode-escape", "idna"],
)  # fmt: skip
def test_unsupported_encodings_are_refused(given) -> None:
    with pytest.raises(CsvDataError) as caught:
        encoding_option(given)
    assert caught.value.code == "invalid_encoding"


@pytest.mark.parametrize(
    ("data", "blank"),
    [(b"a\n1\n", 0), (b"a\n1", 0), (b"a\n1\n\n\n", 2), (b"a\r\n1\r\n\r\n", 1),
     (b"a\n" + b"\n" * 5000, 1023)],
)  # fmt: skip
def test_blank_lines_at_the_end_are_counted(data, blank) -> None:
    tail = Tail()
    assert b"".join(tail.watch([data[i : i + 7] for i in range(0, len(data), 7)])) == data
    assert tail.size == len(data)
    assert tail.blank_lines("utf-8") == blank
    wide = Tail()
    list(wide.watch([data.decode().encode("utf-16-le")]))
    assert wide.blank_lines("utf-16-le") == min(blank, 511)


# --- transcoding for the fast path -------------------------------------------------

ENCODINGS = ["cp1252", "utf-16-le", "utf-16-be", "utf-32-le"]


def reference(raw: bytes, encoding: str, delimiter: str) -> tuple[list[str], list[list[str]]]:
    stream = open_csv([raw], delimiter=delimiter, encoding=encoding)
    rows: list[list[str]] = []
    while batch := stream.read_rows(1000):
        rows += batch
    return stream.columns, rows


def fast_rows(raw: bytes, encoding: str, delimiter: str, columns: list[str], size: int):
    chunks = Utf8Chunks([raw[i : i + size] for i in range(0, len(raw), size)], encoding)
    fast = open_fast_blocks(
        chunks,
        columns=columns,
        has_header=True,
        delimiter=delimiter,
        encoding="utf-8",
        limits=DEFAULT_LIMITS,
    )
    assert fast is not None
    rows: list[list[str]] = []
    while (got := fast.read(1000)) and got[1]:
        for block in got[0]:
            rows += grid_rows(block)
    return fast, rows


CELL = st.text(st.characters(codec="cp1252", exclude_characters="\0"), max_size=12)


@pytest.mark.skipif(not FAST_AVAILABLE, reason="C fast path not built")
@given(
    rows=st.lists(st.lists(CELL, min_size=3, max_size=3), max_size=30),
    encoding=st.sampled_from(ENCODINGS),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    size=st.integers(1, 64),
)
def test_the_fast_path_reads_a_transcoded_file_as_the_reference_reader(
    rows, encoding, delimiter, size
) -> None:
    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if value else value

    text = "".join(delimiter.join(map(cell, r)) + "\r\n" for r in [["a", "b", "c"], *rows])
    raw = text.encode(encoding)
    if encoding.startswith("utf-"):
        raw = codecs.BOM_UTF16_LE if encoding == "utf-16-le" else b""
        raw += text.encode(encoding)
    columns, expected = reference(raw, encoding, delimiter)
    fast, got = fast_rows(raw, encoding, delimiter, columns, size)
    assert fast.finished
    assert got == expected


@pytest.mark.skipif(not FAST_AVAILABLE, reason="C fast path not built")
def test_undecodable_bytes_make_the_fast_path_decline_after_the_rows_before() -> None:
    raw = b"a,b\n" + b"1,2\n" * 100 + b"3,\x81\n" + b"4,5\n"
    fast, got = fast_rows(raw, "cp1252", ",", ["a", "b"], 50)
    assert fast.declined
    assert not fast.finished
    assert len(got) <= 100
    assert got == [["1", "2"]] * len(got)
    with pytest.raises(CsvDataError) as caught:
        reference(raw, "cp1252", ",")
    assert (caught.value.code, caught.value.row, caught.value.offset) == (
        "invalid_encoding",
        101,
        406,
    )


def test_a_truncated_character_at_the_end_is_undecodable() -> None:
    with pytest.raises(Undecodable):
        list(Utf8Chunks([b"a\x00b"], "utf-16-le"))
