"""Files as spreadsheets and databases write them, through the API and a real worker,
with nothing specified: the encoding and the delimiter are detected, values come back
as the right Unicode text, and the detail says what was used."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import read_all_rows, upload, wait_for_status
from tests.scanning.samples import csv_with_cell, eicar

pytestmark = pytest.mark.integration

HEADER = ["Name", "Betrag", "Datum", "Notiz"]
ROWS = [
    ["Müller", "1,50", "31.12.2024", "Größe: «XL» – „gut“ €"],
    ["Zoë Ångström", "-3,20", "01.01.2025", 'sagt "hallo"; dann, tschüss'],
    ["José Martínez", "1000", "15.06.2024", ""],
    ["Ærøskøbing", "0,5", "29.02.2024", "line\r\nbreak"],
]
# Latin-1 lacks the euro sign, the en dash and the German quotes: replaced here.
LATIN1 = str.maketrans({"€": "EUR", "–": "-", "„": '"', "“": '"'})
LATIN1_ROWS = [[value.translate(LATIN1) for value in row] for row in ROWS]


def csv_text(rows: list[list[str]], delimiter: str, newline: str = "\r\n") -> str:
    """What a spreadsheet writes: quotes only where needed."""

    def cell(value: str) -> str:
        if any(c in value for c in (delimiter, '"', "\r", "\n")):
            return '"' + value.replace('"', '""') + '"'
        return value

    return "".join(delimiter.join(map(cell, row)) + newline for row in [HEADER, *rows])


@dataclass(frozen=True)
class Everyday:
    id: str
    content: bytes
    encoding: str
    delimiter: str
    rows: list[list[str]]


EVERYDAY = [
    # Excel (German locale) "CSV (Trennzeichen-getrennt)": Windows-1252, ;, CRLF, 1,50.
    Everyday("windows-1252-semicolon-crlf", csv_text(ROWS, ";").encode("cp1252"), "cp1252", ";",
             ROWS),
    # Excel's "Unicode Text": UTF-16 LE with a byte order mark, TAB, CRLF.
    Everyday("utf-16-bom-tab", codecs.BOM_UTF16_LE + csv_text(ROWS, "\t").encode("utf-16-le"),
             "utf-16-le", "\t", ROWS),
    # Excel's "CSV UTF-8" in a ;-locale.
    Everyday("utf-8-bom-semicolon", codecs.BOM_UTF8 + csv_text(ROWS, ";").encode(), "utf-8", ";",
             ROWS),
    # A database's TSV export (LF).
    Everyday("tsv", csv_text(ROWS, "\t", "\n").encode(), "utf-8", "\t", ROWS),
    Everyday("pipe", csv_text(ROWS, "|").encode(), "utf-8", "|", ROWS),
    # Latin-1 read as Windows-1252: the same text for every printable Latin-1 character.
    Everyday("latin-1-comma", csv_text(LATIN1_ROWS, ",", "\n").encode("latin-1"), "cp1252", ",",
             LATIN1_ROWS),
]  # fmt: skip


def test_everyday_files_ingest_exactly_with_nothing_specified(celery_worker, api):
    # One worker for all six (a worker per file would cost more than the files).
    uploaded = {}
    for case in EVERYDAY:
        response = upload(api, case.content, filename=f"{case.id}.csv")
        assert response.status_code == 201, (case.id, response.content)
        uploaded[case.id] = response.json()["id"]
    for case in EVERYDAY:
        dataset_id = uploaded[case.id]
        dataset = wait_for_status(dataset_id, {"completed", "failed", "rejected"})
        assert dataset.status == "completed", (case.id, dataset.error)
        detail = api.get(f"/api/datasets/{dataset_id}/").json()
        assert (detail["encoding"], detail["encoding_detected"]) == (case.encoding, True), case.id
        assert (detail["delimiter"], detail["delimiter_detected"]) == (case.delimiter, True), (
            case.id
        )
        assert detail["warnings"] == [], case.id
        columns, got = read_all_rows(api, dataset_id)
        assert columns == HEADER, case.id
        assert [r["values"] for r in got] == case.rows, case.id


def test_a_given_encoding_and_delimiter_win_and_are_shown_as_given(celery_worker, api):
    content = csv_text(ROWS, "\t").encode("cp1252")
    response = upload(api, content, encoding="Windows-1252", delimiter="tab")
    assert response.status_code == 201, response.content
    dataset_id = response.json()["id"]
    assert wait_for_status(dataset_id, {"completed", "failed"}).status == "completed"
    detail = api.get(f"/api/datasets/{dataset_id}/").json()
    assert (detail["encoding"], detail["encoding_detected"]) == ("cp1252", False)
    assert (detail["delimiter"], detail["delimiter_detected"]) == ("\t", False)
    assert [r["values"] for r in read_all_rows(api, dataset_id)[1]] == ROWS


def test_a_ragged_row_says_which_delimiter_the_file_looks_like(celery_worker, api):
    content = csv_text(ROWS, ";").encode()
    dataset_id = upload(api, content, delimiter=",").json()["id"]
    dataset = wait_for_status(dataset_id, {"completed", "failed"})
    assert dataset.status == "failed"
    assert dataset.error["code"] == "ragged_row"
    assert "looks semicolon-separated" in dataset.error["message"]
    assert dataset.error["message"].endswith("upload it again with delimiter=;.")


def test_spreadsheet_habits_complete_with_warnings_in_the_detail(celery_worker, api):
    content = b"id,amount,amount,,\r\n1,2,3,,\r\n4,5,6,,\r\n\r\n\r\n"
    dataset_id = upload(api, content).json()["id"]
    dataset = wait_for_status(dataset_id, {"completed", "failed"})
    assert dataset.status == "completed", dataset.error
    detail = api.get(f"/api/datasets/{dataset_id}/").json()
    assert detail["columns"] == ["id", "amount", "amount_2"]
    assert [w["code"] for w in detail["warnings"]] == [
        "empty_columns_dropped",
        "duplicate_header",
        "blank_lines_at_end",
    ]
    assert "2 blank lines" in detail["warnings"][2]["message"]
    assert [r["values"] for r in read_all_rows(api, dataset_id)[1]] == [
        ["1", "2", "3"],
        ["4", "5", "6"],
    ]
    # The warnings hold header names: stored encrypted, like the header.
    assert b"amount" not in bytes(dataset.warnings_ciphertext)


EICAR_ENCODINGS = [
    ("utf-16-le", codecs.BOM_UTF16_LE),
    ("utf-16-le", b""),
    ("utf-16-be", codecs.BOM_UTF16_BE),
    ("utf-16-be", b""),
    ("utf-32-le", codecs.BOM_UTF32_LE),
    ("utf-32-be", codecs.BOM_UTF32_BE),
    ("utf-8", codecs.BOM_UTF8),
    ("cp1252", b""),
]


def test_eicar_is_found_whatever_the_encoding(celery_worker, api):
    uploaded = {}
    for encoding, bom in EICAR_ENCODINGS:
        text = csv_with_cell(eicar(), start=5_000).decode("ascii")
        content = bom + text.replace("plain text", "plain tëxt").encode(encoding)
        if encoding.startswith("utf-16") or encoding.startswith("utf-32"):
            assert eicar() not in content  # hidden between NULs from a raw-byte scan
        label = f"{encoding}{'-bom' if bom else ''}"
        uploaded[label] = upload(api, content).json()["id"]
    for label, dataset_id in uploaded.items():
        dataset = wait_for_status(dataset_id, {"completed", "failed", "rejected"})
        assert dataset.status == "rejected", (label, dataset.error)
        assert dataset.error["code"] == "malware_found", label


AIRQUALITY = Path(__file__).resolve().parents[1] / "csvio" / "data" / "airquality.csv"


def test_the_profile_of_a_public_dataset_with_na(celery_worker, api, other_api):
    # R's airquality as Rdatasets exports it: an unnamed row-name column, NA for missing.
    response = upload(api, AIRQUALITY.read_bytes(), filename="airquality.csv")
    dataset_id = response.json()["id"]
    assert api.get(f"/api/datasets/{dataset_id}/profile/").status_code in (200, 409)
    dataset = wait_for_status(dataset_id, {"completed", "failed"})
    assert dataset.status == "completed", dataset.error
    detail = api.get(f"/api/datasets/{dataset_id}/").json()
    assert [w["code"] for w in detail["warnings"]] == ["unnamed_columns"]
    answer = api.get(f"/api/datasets/{dataset_id}/profile/")
    assert answer.status_code == 200
    profile = answer.json()
    assert profile["row_count"] == 153
    columns = {c["name"]: c for c in profile["columns"]}
    assert list(columns) == ["column_1", "Ozone", "Solar.R", "Wind", "Temp", "Month", "Day"]
    facts = {
        "column_1": ("integer", 0, 1, 153, 153),
        "Ozone": ("integer", 37, 1, 168, None),
        "Solar.R": ("integer", 7, 7, 334, None),
        "Wind": ("number", 0, 1.7, 20.7, None),
        "Temp": ("integer", 0, 56, 97, None),
        "Month": ("integer", 0, 5, 9, 5),
        "Day": ("integer", 0, 1, 31, 31),
    }
    for name, (kind, nulls, low, high, distinct) in facts.items():
        column = columns[name]
        assert (column["type"], column["nulls"], column["min"], column["max"]) == (
            kind,
            nulls,
            low,
            high,
        ), name
        assert column["count"] + column["nulls"] == 153
        assert column["distinct_exact"] is True
        if distinct is not None:
            assert column["distinct"] == distinct, name
        assert "NA" not in column["examples"]
    # Values inside: stored encrypted, and only for the owner.
    dataset.refresh_from_db()
    assert b"Ozone" not in bytes(dataset.profile_ciphertext)
    assert other_api.get(f"/api/datasets/{dataset_id}/profile/").status_code == 404


def test_decimal_commas_of_a_semicolon_file_are_numbers(celery_worker, api):
    content = csv_text(ROWS, ";").encode("cp1252")
    dataset_id = upload(api, content).json()["id"]
    assert wait_for_status(dataset_id, {"completed", "failed"}).status == "completed"
    columns = api.get(f"/api/datasets/{dataset_id}/profile/").json()["columns"]
    betrag = columns[1]
    assert (betrag["name"], betrag["type"], betrag["min"], betrag["max"]) == (
        "Betrag",
        "number",
        -3.2,
        1000.0,
    )
    assert [c["type"] for c in columns] == ["text", "number", "text", "text"]
