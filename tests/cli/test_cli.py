"""The ``csvault`` command against a live server and a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.csvdata import HEADER, to_csv, tricky_rows
from tests.helpers import ROOT
from tests.scanning.samples import csv_with_cell, eicar

pytestmark = pytest.mark.integration


def csvault(live_server: Any, token: str | None, *args: str, **env: str) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "csvault.cli", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "CSVAULT_URL": live_server.url,
            "CSVAULT_TOKEN": token or "",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_login_upload_watch_export_logout(live_server, celery_worker, user, tmp_path: Path):
    login = csvault(live_server, None, "login", "alice", CSVAULT_PASSWORD="pw-alice")
    assert login.returncode == 0, login.stderr
    token = login.stdout.strip().splitlines()[-1]

    rows = tricky_rows(3000)
    source = tmp_path / "people.csv"
    source.write_bytes(to_csv(rows))
    uploaded = csvault(live_server, token, "upload", str(source), "--watch")
    assert uploaded.returncode == 0, uploaded.stderr
    dataset_id = uploaded.stdout.splitlines()[0]
    assert "completed: 3,000 rows" in uploaded.stdout
    assert "100.00%" in uploaded.stderr

    out = tmp_path / "out.jsonl"
    exported = csvault(
        live_server, token, "export", dataset_id, "--format", "jsonl", "-o", str(out)
    )
    assert exported.returncode == 0, exported.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 3000

    status = csvault(live_server, token, "status", dataset_id)
    assert '"status": "completed"' in status.stdout
    assert HEADER[1] in status.stdout

    assert csvault(live_server, token, "logout").returncode == 0
    refused = csvault(live_server, token, "status", dataset_id)
    assert refused.returncode == 2
    assert "HTTP 401" in refused.stderr


def test_a_rejected_file_exits_1_with_the_reason(live_server, celery_worker, user, tmp_path):
    source = tmp_path / "bad.csv"
    source.write_bytes(csv_with_cell(eicar(), start=2000))
    result = csvault(live_server, user.auth_token.key, "upload", str(source), "--watch", "--quiet")
    assert result.returncode == 1
    assert "rejected: malware_found" in result.stderr


def test_a_refused_upload_exits_2_with_the_servers_message(live_server, user, tmp_path):
    source = tmp_path / "empty.csv"
    source.write_bytes(b"")
    result = csvault(live_server, user.auth_token.key, "upload", str(source))
    assert result.returncode == 2
    assert "HTTP 400 empty_file" in result.stderr


def test_without_a_url_it_says_so():
    result = subprocess.run(
        [sys.executable, "-m", "csvault.cli", "status", "x"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in ("CSVAULT_URL", "CSVAULT_TOKEN")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "CSVAULT_URL" in result.stderr
