"""How ``csvault`` fails: one line on stderr, the documented exit status, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from csvault.datasets.models import Dataset
from tests.cli.test_cli import Stderr, cli_env, csvault, csvault_running
from tests.helpers import ROOT, free_port, ingest, upload

pytestmark = pytest.mark.integration


def run(*args: str, cwd: Path = ROOT, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "csvault.cli", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [["rows", "{id}"], ["export", "{id}"], ["head", "{id}", "-n", "3000"]],
    ids=["rows", "export", "head"],
)
def test_a_reader_that_stops_early_ends_it_quietly_with_141(live_server, api, user, command):
    # About 1 MB of output: far more than a pipe holds, so the writes after the reader
    # is gone do fail.
    content = b"n,text\n" + b"".join(
        b"%d,some text value number %d\n" % (i, i) for i in range(30000)
    )
    dataset_id = ingest(upload(api, content))
    proc = subprocess.Popen(
        [sys.executable, "-m", "csvault.cli", *(a.format(id=dataset_id) for a in command)],
        cwd=ROOT,
        env=cli_env(live_server, user.auth_token.key),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        first = proc.stdout.readline()  # like `| head -1`: one line, then close the pipe
        proc.stdout.close()
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first.split() in ([b"n,text"], [b"row", b"n", b"text"])
    assert "Traceback" not in err
    assert (code, err) == (141, "")


def test_a_server_nobody_listens_on_is_one_line_naming_the_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    source = tmp_path / "data.csv"
    source.write_bytes(b"a,b\n1,2\n")
    env = {
        "CSVAULT_URL": url,
        "CSVAULT_TOKEN": "some-token",
        "CSVAULT_PASSWORD": "pw",
        "CSVAULT_UPLOAD_STATE": str(tmp_path / "state.json"),
    }
    for args in (
        ["list"],
        ["show", str(uuid.uuid4())],
        ["login", "alice"],
        ["upload", "--quiet", str(source)],
        ["upload", "--quiet", "--tus", str(source)],
    ):
        result = run(*args, env=env)
        assert (result.returncode, result.stderr) == (
            2,
            f"csvault: cannot reach {url}: Connection refused\n",
        ), args


def test_a_missing_output_folder_is_named(live_server, api, user, tmp_path):
    dataset_id = ingest(upload(api, b"a,b\n1,2\n"))
    result = run(
        "export",
        dataset_id,
        "-o",
        "nope/out.csv",
        cwd=tmp_path,
        env=cli_env(live_server, user.auth_token.key),
    )
    assert (result.returncode, result.stderr) == (
        2,
        "csvault: cannot write nope/out.csv: No such file or directory\n",
    )
    assert list(tmp_path.iterdir()) == []


def test_the_servers_reason_is_one_line_with_its_field_errors(live_server, api, user, tmp_path):
    source = tmp_path / "data.csv"
    source.write_bytes(b"a,b\n1,2\n")
    token = user.auth_token.key

    encoding = csvault(
        live_server, token, "upload", "--quiet", "--encoding", "klingon", str(source)
    )
    assert encoding.returncode == 2
    assert encoding.stderr == (
        "csvault: HTTP 400 invalid_encoding: Unknown encoding 'klingon'. "
        "Use a name such as utf-8, utf-16, windows-1252 or latin-1.\n"
    )
    assert not Dataset.objects.exists()

    name = csvault(live_server, token, "upload", "--quiet", "--name", "n" * 300, str(source))
    assert (name.returncode, name.stderr) == (
        2,
        "csvault: HTTP 400 invalid: The request is invalid. "
        "name: Ensure this field has no more than 255 characters.\n",
    )

    status = csvault(live_server, token, "list", "--status", "bogus")
    assert (status.returncode, status.stderr) == (
        2,
        "csvault: HTTP 400 invalid: The request is invalid. "
        'status: "bogus" is not a valid choice.\n',
    )

    dataset_id = ingest(upload(api, b"a,b\n1,2\n"))
    after = csvault(live_server, token, "rows", dataset_id, "--after", "-1")
    assert (after.returncode, after.stderr) == (
        2,
        "csvault: HTTP 400 invalid: The request is invalid. "
        "after: Ensure this value is greater than or equal to 0.\n",
    )

    gone = csvault(live_server, token, "show", str(uuid.uuid4()))
    assert (gone.returncode, gone.stderr) == (2, "csvault: HTTP 404 not_found: Not found.\n")


def test_usage_errors_are_one_line(tmp_path):
    env = {"CSVAULT_URL": "http://127.0.0.1:9", "CSVAULT_TOKEN": "t"}
    two = tmp_path / "b.csv"
    two.write_bytes(b"a\n1\n")
    for args, says in (
        (["upload"], "csvault upload: the following arguments are required: FILE"),
        (["upload", str(two), str(two), "--name", "x"], "csvault: --name names one dataset"),
        (["upload", "missing.csv"], "csvault: cannot read missing.csv: No such file or directory"),
        (["head", "x", "-n", "0"], "csvault: -n must be 1 or more"),
        (["frobnicate"], "csvault: argument command: invalid choice: 'frobnicate'"),
    ):
        result = run(*args, cwd=tmp_path, env=env)
        assert result.returncode == 2, args
        assert result.stderr.startswith(says), (args, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr


def test_ctrl_c_is_one_line_and_exit_130(live_server, api, user):
    dataset_id = upload(api, b"a,b\n1,2\n").json()["id"]  # no worker: it stays pending
    proc = csvault_running(live_server, user.auth_token.key, "show", dataset_id, "--watch")
    try:
        stderr = Stderr(proc)
        stderr.wait_for("pending")  # following the events
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = stderr.all()
    assert "Traceback" not in err
    assert code == 130
    assert err.endswith("\ncsvault: interrupted\n"), err
