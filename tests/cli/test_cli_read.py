"""``csvault list / show / rows / head / profile`` against a live server."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys

import pytest

from csvault.cli_read import cell
from tests.cli.test_cli import cli_env, csvault
from tests.csvdata import HEADER, to_csv, tricky_rows
from tests.helpers import ROOT, ingest, upload

pytestmark = pytest.mark.integration


def rows_of(output: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(output.decode(), newline="")))


def csvault_bytes(live_server, user, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "csvault.cli", *args],
        cwd=ROOT,
        env=cli_env(live_server, user.auth_token.key),
        capture_output=True,
        timeout=180,
        check=False,
    )


def test_list_follows_the_pages_and_filters(live_server, api, user):
    alpha = ingest(upload(api, b"a,b\n1,2\n3,4\n", name="alpha"))
    beta = ingest(upload(api, b"a;b\n1;2\n", name="Beta semicolons"))
    broken = ingest(upload(api, b"a,b\n1,2\n3\n", name="gamma"))
    waiting = upload(api, b"x\n1\n", name="delta").json()["id"]
    token = user.auth_token.key

    # Two datasets per request: four datasets are only all there if the `next` links
    # are followed.
    listed = csvault(live_server, token, "list", "--page-size", "2")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["id", "name", "status", "rows", "size", "created"]
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d"
    expected = [  # newest first
        (waiting, "delta", "pending", "-", "4 B"),
        (broken, "gamma", "failed", "-", "10 B"),
        (beta, "Beta semicolons", "completed", "1", "8 B"),
        (alpha, "alpha", "completed", "2", "12 B"),
    ]
    assert len(lines) == 1 + len(expected), lines
    for line, (dataset_id, name, status, rows, size) in zip(lines[1:], expected, strict=True):
        pattern = rf"{dataset_id}  {name} +{status} +{rows} +{size}  {stamp}"
        assert re.fullmatch(pattern, line), (pattern, line)

    completed = csvault(live_server, token, "list", "--status", "completed", "--page-size", "1")
    assert [line.split()[0] for line in completed.stdout.splitlines()[1:]] == [beta, alpha]
    found = csvault(live_server, token, "list", "--search", "SEMICOLON")
    assert [line.split()[0] for line in found.stdout.splitlines()[1:]] == [beta]
    nothing = csvault(live_server, token, "list", "--search", "no such name")
    assert (nothing.returncode, nothing.stdout, nothing.stderr) == (0, "", "no datasets\n")


def test_show_is_readable_and_status_is_its_alias(live_server, api, user):
    dataset_id = ingest(upload(api, b"a;b;b\n1;2;3\n", name="dupes"))
    token = user.auth_token.key
    shown = csvault(live_server, token, "show", dataset_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    for expected in (
        f"id         {dataset_id}",
        "name       dupes",
        "file       data.csv",
        "status     completed",
        "rows       1",
        "columns    a, b, b_2",
        "size       12 B (12 bytes)",
        "header     yes",
        "delimiter  ';' (detected)",
        "encoding   utf-8 (detected)",
    ):
        assert expected in lines, (expected, lines)
    assert any(line.startswith("warning    duplicate_header: ") for line in lines), lines
    assert not any(line.startswith("error") for line in lines)

    assert csvault(live_server, token, "status", dataset_id).stdout == shown.stdout
    as_json = json.loads(csvault(live_server, token, "show", dataset_id, "--json").stdout)
    assert (as_json["id"], as_json["columns"]) == (dataset_id, ["a", "b", "b_2"])

    failed = ingest(upload(api, b"a,b\n1,2\n3\n"))
    lines = csvault(live_server, token, "show", failed).stdout.splitlines()
    assert "status     failed" in lines
    [error] = [line for line in lines if line.startswith("error ")]
    assert error.startswith("error      ragged_row: Row 2 (line 3) has 1 field"), error
    assert error.endswith("(row 2, column 2, line 3)"), error


def test_rows_are_the_stored_values_as_csv_across_pages(live_server, api, user):
    data = tricky_rows(2500)
    dataset_id = ingest(upload(api, to_csv(data)))

    every = csvault_bytes(live_server, user, "rows", dataset_id)
    assert every.returncode == 0, every.stderr
    assert rows_of(every.stdout) == [HEADER, *data]

    # Rows 1000 to 2001: a window over three of the API's pages of 1000.
    window = csvault_bytes(
        live_server, user, "rows", dataset_id, "--after", "999", "--limit", "1002"
    )
    assert rows_of(window.stdout) == [HEADER, *data[999:2001]]

    bare = csvault_bytes(live_server, user, "rows", dataset_id, "--after", "2498", "--no-header")
    assert rows_of(bare.stdout) == data[2498:]


def test_head_is_an_aligned_table_or_csv(live_server, api, user):
    long = "x" * 50
    content = f'id,city,note\n1,東京,"two\nlines"\n2,Köln,{long}\n'.encode()
    content += b"".join(f"{n},Riga,n{n}\n".encode() for n in range(3, 13))
    dataset_id = ingest(upload(api, content))
    token = user.auth_token.key

    two = csvault(live_server, token, "head", dataset_id, "-n", "2")
    assert two.returncode == 0, two.stderr
    # Wide characters take two columns, a newline shows as \n, a long value is cut.
    assert two.stdout == (
        f"row  id  city  note\n  1  1   東京  two\\nlines\n  2  2   Köln  {'x' * 39}…\n"
    )
    default = csvault(live_server, token, "head", dataset_id).stdout.splitlines()
    assert len(default) == 11
    assert default[-1].split() == ["10", "10", "Riga", "n10"]

    as_csv = csvault_bytes(live_server, user, "head", dataset_id, "-n", "2", "--csv")
    assert as_csv.stdout == f'id,city,note\n1,東京,"two\nlines"\n2,Köln,{long}\n'.encode()


def test_profile_is_one_line_per_column(live_server, api, user):
    content = b"n,amount,flag,day,word\n1,1.5,true,2024-01-02,a\n2,,false,2024-01-01,b\n"
    content += b"3,12,yes,2024-03-04,a\n"
    dataset_id = ingest(upload(api, content))
    result = csvault(live_server, user.auth_token.key, "profile", dataset_id)
    assert result.returncode == 0, result.stderr
    assert [line.split() for line in result.stdout.splitlines()] == [
        ["column", "type", "nulls", "min", "max", "distinct"],
        ["n", "integer", "0", "1", "3", "3"],
        ["amount", "number", "1", "1.5", "12.0", "2"],
        ["flag", "boolean", "0", "-", "-", "3"],
        ["day", "date", "0", "2024-01-01", "2024-03-04", "3"],
        ["word", "text", "0", "-", "-", "2"],
    ]
    assert result.stderr == "3 rows\n"

    waiting = upload(api, content).json()["id"]
    early = csvault(live_server, user.auth_token.key, "profile", waiting)
    assert early.returncode == 2
    assert early.stderr.startswith("csvault: HTTP 409 not_ready: The dataset is pending")


def test_a_cell_cannot_move_the_terminal():
    # Escape sequences, line separators and bidirectional overrides are shown escaped.
    assert cell("red\x1b[31m\u2028next\u202eevil") == "red\\x1b[31m\\u2028next\\u202eevil"
    assert cell("東京" * 30, limit=9) == "東京東京…"
