"""Exactly once, whatever dies: real worker processes killed mid-ingest.

Every test ends with the same check: row count N, row numbers exactly 1..N,
decrypted rows equal to the source file.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from csvault.datasets.models import Dataset, ProcessedData
from csvault.datasets.selectors import dataset_row_page
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import stored_rows, upload, wait_for_status

pytestmark = pytest.mark.integration

# Workers in these tests notice stalls fast: heartbeat older than 5 s = stalled,
# reaper every second. (Production: 30 s and 15 s.) Batches of 5,000 rows instead of
# 20,000: more checkpoints to land a fault between, and an ingest (~500k rows/s with the
# C fast path) that lasts long enough for the fault to come while it runs.
FAST_REAPER = {
    "CSVAULT_STALL_SECONDS": "5",
    "CSVAULT_REAP_EVERY_SECONDS": "1",
    "CSVAULT_INGEST_BATCH_ROWS": "5000",
}


def assert_rows_exactly(dataset_id: Any, rows: list[list[str]]) -> None:
    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.status == "completed", dataset.error
    assert dataset.row_count == len(rows)
    stored = stored_rows(dataset_id)  # the table itself: blocks from row 1, no gap or overlap
    assert [n for n, _ in stored] == list(range(1, len(rows) + 1))
    assert [values for _, values in stored] == rows
    after, got = 0, []
    while True:
        page = dataset_row_page(
            owner=dataset.owner, dataset_id=dataset.id, after=after, limit=20_000
        )
        got.extend(page.rows)
        if not page.has_more:
            break
        after = page.rows[-1][0]
    assert [n for n, _ in got] == list(range(1, len(rows) + 1))
    assert [values for _, values in got] == rows


def wait_for_progress(dataset_id: Any, rows: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dataset = Dataset.objects.get(id=dataset_id)
        if dataset.rows_processed >= rows:
            assert dataset.status == "processing", "finished before the fault could be injected"
            return
        assert not dataset.is_final, dataset.error
        time.sleep(0.02)
    raise AssertionError(f"ingest of {dataset_id} did not reach {rows} rows in {timeout} s")


def poll_progress(api: Any, dataset_id: Any, timeout: float) -> list[dict[str, Any]]:
    """GET the progress endpoint until a final status; every answer, in order."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(api.get(f"/api/datasets/{dataset_id}/progress/").json())
        if seen[-1]["status"] in {"completed", "failed", "rejected", "cancelled"}:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"{dataset_id} not final after {timeout} s: {seen[-1]}")


@pytest.fixture(scope="module")
def big_file() -> tuple[bytes, list[list[str]]]:
    rows = tricky_rows(600_000, seed=11)
    return to_csv(rows), rows


def test_sigkill_mid_ingest_then_a_new_worker_finishes_within_60s(worker_factory, api, big_file):
    content, rows = big_file
    first = worker_factory()
    first.start(extra_env=FAST_REAPER)
    dataset_id = upload(api, content).json()["id"]
    wait_for_progress(dataset_id, len(rows) // 5)
    first.kill(signal.SIGKILL)
    killed_at = Dataset.objects.get(id=dataset_id).rows_processed
    before = api.get(f"/api/datasets/{dataset_id}/progress/").json()

    second = worker_factory()
    second.start(beat=True, extra_env=FAST_REAPER)
    started = time.monotonic()
    seen = poll_progress(api, dataset_id, timeout=60)
    assert time.monotonic() - started < 60
    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.attempts == 2
    # Progress, as a client polling the API sees it, never went backwards.
    percents = [before["percent"]] + [p["percent"] for p in seen]
    assert percents == sorted(percents)
    assert seen[-1]["percent"] == 100.0
    rows_seen = [p["rows_processed"] for p in seen]
    assert rows_seen == sorted(rows_seen)
    assert len(set(percents)) > 2, "the poll saw the resumed ingest move"
    assert 0 < killed_at < len(rows)
    assert_rows_exactly(dataset_id, rows)


def test_sigterm_mid_ingest_finishes_or_resumes(worker_factory, api):
    rows = tricky_rows(200_000, seed=12)
    first = worker_factory()
    first.start(extra_env=FAST_REAPER)
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    wait_for_progress(dataset_id, len(rows) // 5)
    first.kill(signal.SIGTERM)  # a deploy: warm shutdown
    second = worker_factory()
    second.start(beat=True, extra_env=FAST_REAPER)
    wait_for_status(dataset_id, {"completed", "failed"}, timeout=60)
    assert_rows_exactly(dataset_id, rows)


def test_the_same_task_delivered_twice_at_once_writes_each_row_once(worker_factory, api):
    from csvault.pipeline.tasks import ingest_dataset

    rows = tricky_rows(100_000, seed=13)
    for _ in range(2):
        worker_factory().start()
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    ingest_dataset.delay(str(dataset_id))  # a duplicate of the message the upload queued
    ingest_dataset.delay(str(dataset_id))
    wait_for_status(dataset_id, {"completed", "failed"})
    assert_rows_exactly(dataset_id, rows)
    assert Dataset.objects.get(id=dataset_id).attempts == 1


def test_a_file_that_kills_its_worker_every_time_ends_failed(worker_factory, api):
    # The test plays the poison file: whenever a worker starts ingesting the
    # dataset, that worker dies (SIGKILL), as if the file crashed it.
    rows = tricky_rows(200_000, seed=14)
    env = {**FAST_REAPER, "CSVAULT_MAX_ATTEMPTS": "2"}
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    for attempt in (1, 2):
        worker = worker_factory()
        worker.start(beat=True, extra_env=env)
        deadline = time.monotonic() + 60
        while Dataset.objects.get(id=dataset_id).attempts < attempt:
            assert time.monotonic() < deadline, f"attempt {attempt} never started"
            time.sleep(0.02)
        worker.kill(signal.SIGKILL)
    worker_factory().start(beat=True, extra_env=env)
    dataset = wait_for_status(dataset_id, {"completed", "failed"}, timeout=60)
    assert dataset.status == "failed"
    assert dataset.error["code"] == "too_many_attempts"
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()
    time.sleep(3)  # and it stays failed: nothing loops
    assert Dataset.objects.get(id=dataset_id).status == "failed"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL backends only")
def test_the_workers_database_connection_killed_mid_batch_resumes(worker_factory, api):
    rows = tricky_rows(300_000, seed=15)
    worker_factory().start(beat=True, extra_env=FAST_REAPER)
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    wait_for_progress(dataset_id, len(rows) // 5)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchall(), "no worker connection to terminate"
    wait_for_status(dataset_id, {"completed", "failed"}, timeout=90)
    assert_rows_exactly(dataset_id, rows)
    assert Dataset.objects.get(id=dataset_id).attempts >= 2


def _restart_redis() -> None:
    url = settings.CELERY_BROKER_URL
    port = url.rsplit(":", 1)[-1].split("/")[0]
    subprocess.run(
        ["redis-cli", "-p", port, "shutdown", "nosave"], check=False, capture_output=True
    )
    time.sleep(1)
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", port,
         "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
         "--logfile", "/var/log/redis/ci.log"],
        check=True, capture_output=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ping = subprocess.run(["redis-cli", "-p", port, "ping"], capture_output=True, text=True)
        if ping.stdout.strip() == "PONG":
            return
        time.sleep(0.2)
    raise AssertionError("Redis did not come back")


@pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis://127.0.0.1") or not shutil.which("redis-cli"),
    reason="needs the local Redis broker to restart",
)
def test_redis_restarted_mid_ingest_loses_nothing(worker_factory, api):
    rows = tricky_rows(300_000, seed=16)
    worker_factory().start(beat=True, extra_env=FAST_REAPER)
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    wait_for_progress(dataset_id, len(rows) // 5)
    _restart_redis()
    wait_for_status(dataset_id, {"completed", "failed"}, timeout=90)
    assert_rows_exactly(dataset_id, rows)
