"""``csvault upload`` of several files, its progress on a terminal, ``cancel`` and ``delete``."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from typing import Any

import pytest

from csvault.cli_progress import size
from csvault.datasets.models import Dataset
from tests.cli.test_cli import cli_env, csvault
from tests.helpers import ROOT, ingest, upload

pytestmark = pytest.mark.integration

SAMPLES = ROOT / "samples"


def with_terminal(
    live_server: Any, user: Any, *args: str, on: str, typed: bytes = b""
) -> tuple[int, str, str]:
    """Run the command with stdin or stderr (``on``) on a pseudo-terminal; ``typed`` is
    what the user types. Returns the exit status, stdout and stderr (the terminal's
    output when stderr is the terminal)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "csvault.cli", *args],
        cwd=ROOT,
        env=cli_env(live_server, user.auth_token.key),
        stdin=terminal if on == "stdin" else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal if on == "stderr" else subprocess.PIPE,
    )
    os.close(terminal)
    shown = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # EIO: the command closed its end
                return
            if not data:
                return
            shown.extend(data)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        os.write(controller, typed)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        os.close(controller)
    text_err = shown.decode() if on == "stderr" else err.decode()
    return proc.returncode, out.decode(), text_err


def test_several_files_in_one_command_ingested_by_a_worker(live_server, celery_worker, user):
    first, semicolon = SAMPLES / "first.csv", SAMPLES / "semicolon.csv"
    result = csvault(
        live_server, user.auth_token.key, "upload", str(first), str(semicolon), "--watch"
    )
    assert result.returncode == 0, result.stderr
    first_id, semicolon_id, *outcomes = result.stdout.splitlines()
    assert outcomes == [
        "first.csv: completed: 20 rows, columns "
        "['id', 'name', 'city', 'signup_date', 'plan', 'monthly_fee', 'active']",
        "semicolon.csv: completed: 10 rows, columns "
        "['date', 'product', 'quantity', 'unit_price', 'total']",
    ]
    # stderr is a pipe: plain progress lines, each file's last one at 100 %.
    assert "\r" not in result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("first.csv 100.0%") and "done in" in line for line in lines)
    assert any(line.startswith("semicolon.csv 100.0%") for line in lines)
    assert any(line.startswith("semicolon.csv: completed  100.00%") for line in lines)
    assert Dataset.objects.get(id=semicolon_id).delimiter == ";"

    listed = csvault(live_server, user.auth_token.key, "list").stdout.splitlines()[1:]
    assert [line.split()[:4] for line in listed] == [
        [semicolon_id, "semicolon.csv", "completed", "10"],
        [first_id, "first.csv", "completed", "20"],
    ]


def test_a_refused_file_among_several_is_named_and_the_others_go_on(live_server, user, tmp_path):
    empty, good = tmp_path / "empty.csv", tmp_path / "good.csv"
    empty.write_bytes(b"")
    good.write_bytes(b"a,b\n1,2\n")
    result = csvault(live_server, user.auth_token.key, "upload", "--quiet", str(empty), str(good))
    assert result.returncode == 2
    assert result.stderr.startswith(f"csvault: {empty}: HTTP 400 empty_file: ")
    assert result.stderr.count("\n") == 1
    [dataset_id] = result.stdout.splitlines()
    assert Dataset.objects.get(id=dataset_id).original_filename == "good.csv"


def test_on_a_terminal_the_upload_progress_is_one_redrawn_bar(live_server, user, tmp_path):
    source = tmp_path / "three.csv"
    source.write_bytes(b"n,text\n" + b"".join(b"%d,value %d\n" % (i, i) for i in range(200_000)))
    code, out, shown = with_terminal(
        live_server, user, "upload", "--no-tus", str(source), on="stderr"
    )
    assert code == 0, shown
    assert Dataset.objects.filter(id=out.strip()).exists()
    # Redrawn in place (\r) and ended once (the terminal turns \n into \r\n).
    assert shown.startswith("\rthree.csv [........................]   0.0%"), shown
    total = size(source.stat().st_size)  # "3.8 MiB"
    done = f"{total.split()[0]} of {total}"
    assert f"\rthree.csv [########################] 100.0%  {done}  " in shown
    assert shown.count("\n") == 1, shown
    assert shown.endswith("\r\n"), shown


def test_cancel(live_server, api, user):
    token = user.auth_token.key
    waiting = upload(api, b"a,b\n1,2\n", name="later").json()["id"]  # no worker: pending
    result = csvault(live_server, token, "cancel", waiting)
    assert (result.returncode, result.stdout) == (0, f"cancelled: later ({waiting})\n")
    assert Dataset.objects.get(id=waiting).status == "cancelled"

    done = ingest(upload(api, b"a,b\n1,2\n", name="done"))
    result = csvault(live_server, token, "cancel", done)
    assert result.returncode == 0
    assert result.stderr == f"done ({done}) is completed already: nothing to cancel\n"
    assert Dataset.objects.get(id=done).status == "completed"


def test_delete_asks_on_a_terminal(live_server, api, user):
    dataset_id = ingest(upload(api, b"a,b\n1,2\n", name="precious"))
    prompt = f"Delete dataset precious ({dataset_id})? [y/N] "

    code, out, err = with_terminal(
        live_server, user, "delete", dataset_id, on="stdin", typed=b"n\n"
    )
    assert (code, out, err) == (0, "", prompt + "not deleted\n")
    assert api.get(f"/api/datasets/{dataset_id}/").status_code == 200

    code, out, err = with_terminal(
        live_server, user, "delete", dataset_id, on="stdin", typed=b"y\n"
    )
    assert (code, out, err) == (0, f"deleted: precious ({dataset_id})\n", prompt)
    assert api.get(f"/api/datasets/{dataset_id}/").status_code == 404


def test_delete_without_a_terminal_needs_yes(live_server, api, user):
    dataset_id = ingest(upload(api, b"a,b\n1,2\n", name="precious"))
    token = user.auth_token.key
    refused = csvault(live_server, token, "delete", dataset_id)  # stdin: not a terminal
    assert refused.returncode == 2
    assert refused.stderr == (
        f"csvault: not deleting precious ({dataset_id}): "
        "stdin is not a terminal to ask on; add --yes\n"
    )
    assert api.get(f"/api/datasets/{dataset_id}/").status_code == 200

    deleted = csvault(live_server, token, "delete", dataset_id, "--yes")
    assert (deleted.returncode, deleted.stdout) == (0, f"deleted: precious ({dataset_id})\n")
    assert api.get(f"/api/datasets/{dataset_id}/").status_code == 404
