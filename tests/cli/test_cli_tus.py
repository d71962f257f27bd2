"""``csvault upload`` over tus (resumable) against a live server: chunks, resuming, state."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from csvault.cli_tus import CHUNK_SIZE
from csvault.datasets.models import Dataset
from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.scan import dataset_scan
from tests.cli.test_cli import csvault
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import ROOT, stored_rows

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

#: About 20 MB: three chunks of 8 MiB, the last one short.
ROWS = 320_000


@pytest.fixture(scope="module")
def big_rows() -> list[list[str]]:
    return tricky_rows(ROWS)


@pytest.fixture
def big_file(big_rows: list[list[str]], tmp_path: Path) -> Path:
    path = tmp_path / "big.csv"
    path.write_bytes(to_csv(big_rows))
    assert 2 * CHUNK_SIZE < path.stat().st_size < 3 * CHUNK_SIZE
    return path


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state" / "uploads.json"


def upload(live_server: Any, user: Any, state: Path, *args: str, **env: str) -> Any:
    return csvault(
        live_server,
        user.auth_token.key,
        "upload",
        *args,
        CSVAULT_UPLOAD_STATE=str(state),
        **env,
    )


def saved(state: Path) -> dict[str, Any]:
    return json.loads(state.read_text()) if state.exists() else {}


def ingest_exact(dataset_id: str, rows: list[list[str]]) -> None:
    uid = uuid.UUID(dataset_id)
    assert dataset_scan(dataset_id=uid, on_clean=None).status == "queued"
    assert dataset_ingest(dataset_id=uid).status == "completed"
    assert [values for _, values in stored_rows(uid)] == rows


def test_a_large_file_goes_in_chunks_and_its_rows_are_exact(
    live_server, user, big_file, big_rows, state
):
    result = upload(live_server, user, state, str(big_file), "--name", "big one")
    assert result.returncode == 0, result.stderr
    dataset_id = result.stdout.splitlines()[0]
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.status, dataset.name) == ("pending", "big one")
    assert dataset.bytes_received == dataset.size == big_file.stat().st_size
    # stderr is a pipe: plain lines, about one per tenth (no redrawn bar), then "done".
    assert "\r" not in result.stderr
    progress = [line for line in result.stderr.splitlines() if "big.csv (resumable)" in line]
    assert 5 <= len(progress) <= 12, progress
    assert "/s  ETA " in progress[len(progress) // 2]
    assert "100.0%" in progress[-1]
    assert "done in" in progress[-1]
    assert "resuming" not in result.stderr
    assert saved(state) == {}  # done: nothing left to resume
    ingest_exact(dataset_id, big_rows)


def test_an_interrupted_upload_resumes_from_the_servers_offset(
    live_server, user, big_file, big_rows, state
):
    first = upload(
        live_server, user, state, str(big_file), "--quiet", CSVAULT_TUS_STOP_AFTER_CHUNKS="1"
    )
    assert first.returncode == 130, first.stderr
    assert "run the same command again to resume" in first.stderr
    assert first.stdout == ""
    [entry] = saved(state).values()
    dataset_id = entry["url"].rsplit("/", 1)[1]
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.status, dataset.bytes_received) == ("uploading", CHUNK_SIZE)

    second = upload(live_server, user, state, str(big_file), "--quiet")
    assert second.returncode == 0, second.stderr
    assert f"resuming at {CHUNK_SIZE} bytes" in second.stderr
    assert second.stdout.splitlines()[0] == dataset_id
    assert saved(state) == {}
    dataset.refresh_from_db()
    assert (dataset.status, dataset.bytes_received) == ("pending", dataset.size)
    ingest_exact(dataset_id, big_rows)


def test_a_gone_or_changed_upload_starts_over(live_server, user, big_file, state):
    stop = {"CSVAULT_TUS_STOP_AFTER_CHUNKS": "1"}
    assert upload(live_server, user, state, str(big_file), "--quiet", **stop).returncode == 130
    [entry] = saved(state).values()
    first_id = entry["url"].rsplit("/", 1)[1]
    Dataset.objects.filter(id=first_id).delete()  # gone from the server (expired, deleted)

    again = upload(live_server, user, state, str(big_file), "--quiet", **stop)
    assert again.returncode == 130, again.stderr
    assert "gone from the server: starting over" in again.stderr
    [entry] = saved(state).values()
    second_id = entry["url"].rsplit("/", 1)[1]
    assert second_id != first_id

    stat = big_file.stat()  # the file changed (its mtime): a new upload, the old one stays
    os.utime(big_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = upload(live_server, user, state, str(big_file), "--quiet")
    assert changed.returncode == 0, changed.stderr
    assert "resuming" not in changed.stderr
    third_id = changed.stdout.splitlines()[0]
    assert third_id not in (first_id, second_id)
    assert len(saved(state)) == 1  # the second upload's entry, still resumable
    assert Dataset.objects.get(id=second_id).status == "uploading"


def test_a_small_file_goes_multipart_unless_tus_is_asked_for(live_server, user, tmp_path, state):
    rows = tricky_rows(500)
    source = tmp_path / "small.csv"
    source.write_bytes(to_csv(rows))

    plain = upload(live_server, user, state, str(source))
    assert plain.returncode == 0, plain.stderr
    assert "small.csv 100.0%" in plain.stderr  # the multipart progress, not the resumable one
    assert "(resumable)" not in plain.stderr
    assert not state.exists()
    ingest_exact(plain.stdout.splitlines()[0], rows)

    forced = upload(
        live_server, user, state, str(source), "--tus", "--delimiter", "tab", "--no-header",
        "--encoding", "latin-1",
    )  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert "small.csv (resumable) 100.0%" in forced.stderr
    dataset = Dataset.objects.get(id=forced.stdout.splitlines()[0])
    assert dataset.has_header is False
    # The options travel as tus Upload-Metadata.
    assert (dataset.delimiter, dataset.encoding) == ("\t", "iso8859-1")
    assert dataset.name == "small.csv"
    assert saved(state) == {}


def test_a_tus_error_answer_exits_2_with_the_servers_message(live_server, user, tmp_path, state):
    source = tmp_path / "binary.csv"
    source.write_bytes(b"\x00\x01\x02" * 1000)
    result = upload(live_server, user, state, str(source), "--tus", "--quiet")
    assert result.returncode == 2
    assert "HTTP 415 not_csv" in result.stderr


class CuttingProxy:
    """A TCP proxy in front of the live server that cuts the first PATCH's connection
    (both ways) once ``cut_after`` bytes of it went through: a connection dropped
    mid-chunk, for real."""

    def __init__(self, target: tuple[str, int], cut_after: int) -> None:
        self.target, self.cut_after = target, cut_after
        self.cuts_left = 1
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://localhost:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, request: bool) -> None:
        forwarded, limit = 0, None
        try:
            while data := src.recv(65536):
                if request and forwarded == 0 and data.startswith(b"PATCH"):
                    with self.lock:
                        if self.cuts_left:
                            self.cuts_left -= 1
                            limit = self.cut_after
                if limit is not None and forwarded + len(data) >= limit:
                    dst.sendall(data[: limit - forwarded])
                    break
                dst.sendall(data)
                forwarded += len(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def test_a_connection_dropped_mid_chunk_is_retried_from_the_servers_offset(
    live_server, user, big_file, big_rows, state
):
    parts = urlsplit(live_server.url)
    proxy = CuttingProxy((parts.hostname or "localhost", parts.port or 80), cut_after=3 << 20)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "csvault.cli", "upload", str(big_file), "--quiet"],
            cwd=ROOT,
            env={
                **os.environ,
                "CSVAULT_URL": proxy.url,
                "CSVAULT_TOKEN": user.auth_token.key,
                "CSVAULT_UPLOAD_STATE": str(state),
            },
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        proxy.close()
    assert proxy.cuts_left == 0
    assert result.returncode == 0, result.stderr
    assert "retrying in 1 s" in result.stderr
    ingest_exact(result.stdout.splitlines()[0], big_rows)
