"""The ``csvault`` command against a live server and a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from csvault.datasets.models import Dataset
from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.scan import dataset_scan
from tests.csvdata import HEADER, to_csv, tricky_rows
from tests.helpers import ROOT, ingest, read_all_rows, upload
from tests.scanning.samples import csv_with_cell, eicar

pytestmark = pytest.mark.integration


def cli_env(live_server: Any, token: str | None, **env: str) -> dict[str, str]:
    return {**os.environ, "CSVAULT_URL": live_server.url, "CSVAULT_TOKEN": token or "", **env}


def csvault(live_server: Any, token: str | None, *args: str, **env: str) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "csvault.cli", *args],
        cwd=ROOT,
        env=cli_env(live_server, token, **env),
        stdin=subprocess.DEVNULL,  # never the terminal pytest runs in (delete would ask)
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


#: Runs the command with Ctrl-C (SIGINT) handled as a terminal user's shell would leave it:
#: a shell without job control (a CI script running suites in the background) starts its
#: background jobs with SIGINT ignored, and the command would inherit that.
WITH_SIGINT = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'csvault'; runpy.run_module('csvault.cli', run_name='__main__')"
)


def csvault_running(live_server: Any, token: str | None, *args: str) -> Any:
    """The command started, not awaited (``Stderr`` reads what it says as it goes)."""
    return subprocess.Popen(
        [sys.executable, "-c", WITH_SIGINT, *args],
        cwd=ROOT,
        env=cli_env(live_server, token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def scan_and_ingest(dataset_id: str) -> str:
    """The pipeline in-process (no worker): the dataset's final status."""
    uid = uuid.UUID(dataset_id)
    if dataset_scan(dataset_id=uid, on_clean=None).status == "queued":
        return dataset_ingest(dataset_id=uid).status
    return Dataset.objects.get(id=uid).status


class Stderr:
    """A running command's stderr, collected by a thread as it comes (progress lines end
    in ``\r``, not newlines), with a wait for some text to appear."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        self._pipe = proc.stderr
        self._text = b""
        self._ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while chunk := self._pipe.read1(4096):  # type: ignore[attr-defined]
            with self._changed:
                self._text += chunk
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        """Until ``text`` is on stderr; fails if the command ends or the time runs out first."""
        with self._changed:
            self._changed.wait_for(lambda: text.encode() in self._text or self._ended, timeout)
            if text.encode() not in self._text:
                raise AssertionError(f"{text!r} not on stderr: {self._text!r}")

    def all(self) -> str:
        self._reader.join(timeout=60)
        return self._text.decode()


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
    assert "status     completed\n" in status.stdout
    assert f"columns    {', '.join(HEADER)}\n" in status.stdout

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


def test_csv_export_to_stdout_is_the_servers_csv_byte_for_byte(live_server, api, user):
    dataset_id = ingest(upload(api, b'id,note\n1,=2\n2,"a,b"\n3,"two\nlines"\n'))
    result = subprocess.run(
        [sys.executable, "-m", "csvault.cli", "export", dataset_id],
        cwd=ROOT,
        env=cli_env(live_server, user.auth_token.key),
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Bytes, not text: the CRLF line ends and the quoting arrive unchanged.
    assert result.stdout == b'id,note\r\n1,\'=2\r\n2,"a,b"\r\n3,"two\nlines"\r\n'
    assert b"exported" in result.stderr


@pytest.mark.parametrize(
    ("content", "status", "code", "says"),
    [
        (b"a,b\n1,2\n3,4\n", "completed", 0, "completed: 2 rows, columns ['a', 'b']"),
        (b"a,b\n1,2\n3\n", "failed", 1, "failed: ragged_row"),
    ],
)
def test_status_watch_follows_a_dataset_until_it_is_final(
    live_server, api, user, content, status, code, says
):
    dataset_id = upload(api, content).json()["id"]
    proc = csvault_running(live_server, user.auth_token.key, "status", dataset_id, "--watch")
    try:
        stderr = Stderr(proc)
        stderr.wait_for("pending")  # watching: the first event has arrived
        assert proc.poll() is None
        assert scan_and_ingest(dataset_id) == status
        assert proc.wait(timeout=120) == code
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stdout is not None
    out, err = proc.stdout.read().decode(), stderr.all()
    assert says in (out if code == 0 else err), (out, err)
    # stderr is a pipe: plain lines (no carriage returns), the final status among them.
    assert "\r" not in err
    assert any(line.startswith(f"{status:<10}") for line in err.splitlines()), err


def test_upload_options_reach_the_server(live_server, api, user, tmp_path):
    source = tmp_path / "semicolons.csv"
    source.write_bytes(b"1;x,y\n2;z\n")
    result = csvault(
        live_server,
        user.auth_token.key,
        "upload",
        str(source),
        "--delimiter",
        ";",
        "--no-header",
        "--name",
        "by the cli",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    dataset_id = result.stdout.splitlines()[0]
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.delimiter, dataset.has_header, dataset.name) == (";", False, "by the cli")
    assert scan_and_ingest(dataset_id) == "completed"
    assert read_all_rows(api, dataset_id) == (
        ["column_1", "column_2"],
        [{"row": 1, "values": ["1", "x,y"]}, {"row": 2, "values": ["2", "z"]}],
    )

    plain = tmp_path / "plain.csv"
    plain.write_bytes(b"a;b\n1;2\n")
    result = csvault(live_server, user.auth_token.key, "upload", str(plain), "--quiet")
    assert result.returncode == 0, result.stderr
    dataset = Dataset.objects.get(id=result.stdout.splitlines()[0])
    # Nothing given: the scan detects the format.
    assert (dataset.delimiter, dataset.encoding, dataset.name) == ("", "", "plain.csv")
    assert scan_and_ingest(str(dataset.id)) == "completed"
    dataset.refresh_from_db()
    assert (dataset.delimiter, dataset.delimiter_detected) == (";", True)

    tabs = tmp_path / "tabs.txt"
    tabs.write_bytes("name\tcity\nJosé\tKöln\n".encode("cp1252"))
    result = csvault(
        live_server,
        user.auth_token.key,
        "upload",
        str(tabs),
        "--delimiter",
        "tab",
        "--encoding",
        "windows-1252",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    dataset_id = result.stdout.splitlines()[0]
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.delimiter, dataset.encoding) == ("\t", "cp1252")
    assert scan_and_ingest(dataset_id) == "completed"
    assert read_all_rows(api, dataset_id)[1] == [{"row": 1, "values": ["José", "Köln"]}]
