"""Exactly once, whatever dies or races: real worker processes killed, cut off from
their database or broker, cancelled or sent duplicates mid-ingest.

Every test that injects a fault checks that it found the ingest running. Those that let the
dataset finish end with the same check: row count N, row numbers exactly 1..N,
decrypted rows equal to the source file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from csvault.datasets.models import Dataset, ProcessedData
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import (
    RedisServer,
    Worker,
    assert_rows_exactly,
    broker_switched,
    queue_length,
    stage_queue,
    terminate_other_connections,
    upload,
    wait_for_status,
    wait_until,
)

pytestmark = pytest.mark.integration

# Workers in these tests notice stalls fast: heartbeat older than 5 s = stalled,
# reaper every second. (Production: 30 s and 15 s.) Batches of 1,000 rows instead of
# 20,000: a checkpoint every few milliseconds, and an ingest of 300,000 rows that lasts
# about a second instead of a quarter. Each fault is injected while the worker is
# frozen (SIGSTOP) right after its first checkpoint, and each test checks that the
# fault found the ingest running (and fails if it did not).
FAST_REAPER = {
    "CSVAULT_STALL_SECONDS": "5",
    "CSVAULT_REAP_EVERY_SECONDS": "1",
    "CSVAULT_INGEST_BATCH_ROWS": "1000",
}


def wait_for_progress(dataset_id: Any, rows: int = 1, timeout: float = 120) -> None:
    """Wait until the ingest has committed ``rows`` rows and is still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dataset = Dataset.objects.get(id=dataset_id)
        if dataset.rows_processed >= rows:
            assert dataset.status == "processing", "finished before the fault could be injected"
            return
        assert not dataset.is_final, dataset.error
        time.sleep(0.01)
    raise AssertionError(f"ingest of {dataset_id} did not reach {rows} rows in {timeout} s")


def assert_mid_ingest(dataset_id: Any, total: int) -> Dataset:
    """The dataset as the fault finds it: still processing, some rows committed, not all."""
    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.status == "processing", f"the fault missed the ingest: {dataset.status}"
    assert 0 < dataset.rows_processed < total, f"the fault missed: {dataset.rows_processed} rows"
    return dataset


# How long a stopping worker gets before it is killed (a process manager's stop
# timeout). Celery's warm shutdown can wait on a pool process the SIGTERM has killed.
STOP_GRACE_SECONDS = 20


def pause_mid_ingest(worker: Worker, dataset_id: Any, total: int) -> Dataset:
    """Freeze ``worker`` (SIGSTOP) once its ingest has committed a batch; the dataset then
    (processing, short of ``total`` rows): the moment the fault that follows lands on."""
    wait_for_progress(dataset_id)
    worker.pause()
    return assert_mid_ingest(dataset_id, total)


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


def test_sigkill_mid_ingest_then_a_new_worker_resumes(worker_factory, api, big_file):
    content, rows = big_file
    first = worker_factory()
    first.start(extra_env=FAST_REAPER)
    dataset_id = upload(api, content).json()["id"]
    pause_mid_ingest(first, dataset_id, len(rows))
    first.kill(signal.SIGKILL)
    killed_at = assert_mid_ingest(dataset_id, len(rows)).rows_processed  # what the dead run left
    before = api.get(f"/api/datasets/{dataset_id}/progress/").json()

    second = worker_factory()
    second.start(beat=True, extra_env=FAST_REAPER)
    seen = poll_progress(api, dataset_id, timeout=120)
    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.attempts == 2  # the second worker resumed the run the first one left
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
    rows = tricky_rows(300_000, seed=12)
    first = worker_factory()
    first.start(extra_env=FAST_REAPER)
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    pause_mid_ingest(first, dataset_id, len(rows))
    fault_at = timezone.now()
    first.signal(signal.SIGTERM)  # a deploy: the whole worker is told to stop
    first.resume()
    try:
        first.wait_exit(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        first.kill(signal.SIGKILL)  # as a process manager does once its stop timeout is up
    second = worker_factory()
    second.start(beat=True, extra_env=FAST_REAPER)
    dataset = wait_for_status(dataset_id, {"completed", "failed"}, timeout=120)
    assert_rows_exactly(dataset_id, rows)
    # The signal came while the ingest ran: either the stopping worker finished it
    # after the signal, or a later attempt resumed it.
    assert dataset.attempts >= 2 or dataset.finished_at > fault_at


def test_the_same_task_delivered_twice_at_once_writes_each_row_once(worker_factory, api):
    from csvault.pipeline.tasks import ingest_dataset

    rows = tricky_rows(300_000, seed=13)
    scanner = worker_factory()
    scanner.start(stages=("scan",))
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    assert wait_for_status(dataset_id, {"queued", "failed", "rejected"}).status == "queued"
    wait_until(lambda: queue_length(stage_queue("ingest")) == 1, what="the ingest message queued")
    ingest_dataset.delay(str(dataset_id))  # a duplicate of the message the scan queued
    assert queue_length(stage_queue("ingest")) == 2
    # One worker, two pool processes: it takes both messages and runs them side by side.
    ingester = worker_factory()
    ingester.start(stages=("ingest",), concurrency=2, extra_env=FAST_REAPER)
    wait_for_status(dataset_id, {"completed", "failed"})
    ingester.wait_for_log("csvault.ingest_dataset[", count=4)  # 2 received + 2 succeeded
    assert ingester.received("csvault.ingest_dataset") == 2
    log = ingester.log.read_text()
    assert log.count(f"ingest of {dataset_id} completed") == 1
    assert log.count(f"ingest of {dataset_id} skipped: not claimable") == 1
    assert Dataset.objects.get(id=dataset_id).attempts == 1
    assert queue_length(stage_queue("ingest")) == 0
    assert_rows_exactly(dataset_id, rows)


def test_a_duplicate_delivered_while_the_ingest_runs_does_nothing(worker_factory, api):
    from csvault.pipeline.tasks import ingest_dataset

    rows = tricky_rows(300_000, seed=17)
    runner = worker_factory()
    runner.start(extra_env={"CSVAULT_INGEST_BATCH_ROWS": "500"})  # stall: 30 s
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    # Frozen, the runner cannot finish while the other worker starts. (It may hold the
    # dataset's row lock, or SQLite's write lock, so the duplicates go out only once it
    # runs again.)
    pause_mid_ingest(runner, dataset_id, len(rows))
    other = worker_factory()
    other.start(stages=("ingest",), extra_env={"LOG_FORMAT": "json"})  # its times are read
    runner.resume()
    for _ in range(2):
        ingest_dataset.delay(str(dataset_id))
    skipped = f"ingest of {dataset_id} skipped: not claimable"
    other.wait_for_log(skipped, count=2)
    dataset = wait_for_status(dataset_id, {"completed", "failed"})
    assert dataset.attempts == 1
    assert f"ingest of {dataset_id} completed" in runner.log.read_text()
    # Both duplicates came while the run was in flight, before it finished.
    skipped_at = [
        datetime.fromisoformat(json.loads(line)["time"])
        for line in other.log.read_text().splitlines()
        if skipped in line
    ]
    assert max(skipped_at) < dataset.finished_at
    assert_rows_exactly(dataset_id, rows)


def test_a_file_that_kills_its_worker_every_time_ends_failed(worker_factory, api):
    # The test plays the poison file: whenever a worker starts ingesting the
    # dataset, that worker dies (SIGKILL), as if the file crashed it.
    rows = tricky_rows(200_000, seed=14)
    env = {**FAST_REAPER, "CSVAULT_MAX_ATTEMPTS": "2"}
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    for attempt in (1, 2):
        worker = worker_factory()
        worker.start(beat=True, extra_env=env)
        wait_until(
            lambda: Dataset.objects.get(id=dataset_id).attempts >= attempt,  # noqa: B023
            what=f"attempt {attempt} started",
        )
        worker.pause()
        worker.kill(signal.SIGKILL)
        dataset = Dataset.objects.get(id=dataset_id)
        assert (dataset.status, dataset.attempts) == ("processing", attempt), "the kill missed"
    last = worker_factory()
    last.start(beat=True, extra_env=env)
    dataset = wait_for_status(dataset_id, {"completed", "failed"}, timeout=60)
    assert dataset.status == "failed"
    assert dataset.error["code"] == "too_many_attempts"
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()
    # And it stays failed: the reaper, ticking on, sends nothing more for it.
    ingests = last.received("csvault.ingest_dataset")
    ticks = last.received("csvault.reap_stalled")
    wait_until(lambda: last.received("csvault.reap_stalled") >= ticks + 3, what="3 reaper ticks")
    assert last.received("csvault.ingest_dataset") == ingests
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.status, dataset.attempts) == ("failed", 3)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL backends only")
def test_the_workers_database_connection_killed_mid_batch_resumes(worker_factory, api):
    rows = tricky_rows(300_000, seed=15)
    worker = worker_factory()
    worker.start(beat=True, extra_env=FAST_REAPER)
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    pause_mid_ingest(worker, dataset_id, len(rows))
    terminate_other_connections()
    worker.resume()
    dataset = wait_for_status(dataset_id, {"completed", "failed"}, timeout=120)
    assert_rows_exactly(dataset_id, rows)
    assert dataset.attempts >= 2  # the run that lost its connection was retried


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to restart without touching anyone else's."""
    if not shutil.which("redis-server"):
        if os.environ.get("CI"):
            pytest.fail("redis-server is not on PATH (CI is set, so it is required)")
        pytest.skip("redis-server is not on PATH")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_redis_restarted_mid_ingest_loses_nothing(private_redis, worker_factory, api, settings):
    rows = tricky_rows(300_000, seed=16)
    settings.CELERY_BROKER_URL = private_redis.url
    env = {**FAST_REAPER, "CELERY_BROKER_URL": private_redis.url}
    with broker_switched(private_redis.url):
        worker = worker_factory()
        worker.start(beat=True, extra_env=env)
        dataset_id = upload(api, to_csv(rows)).json()["id"]
        pause_mid_ingest(worker, dataset_id, len(rows))
        fault_at = timezone.now()
        private_redis.restart()  # empty: the ingest's unacknowledged message is gone
        worker.resume()
        dataset = wait_for_status(dataset_id, {"completed", "failed"}, timeout=120)
        assert_rows_exactly(dataset_id, rows)
        assert dataset.attempts >= 2 or dataset.finished_at > fault_at
        # The worker is back on the restarted broker: the next upload goes through.
        later = upload(api, to_csv(tricky_rows(1000, seed=18))).json()["id"]
        assert wait_for_status(later, {"completed", "failed"}, timeout=120).status == "completed"
        # Each message went through the private broker: none needed the reaper.
        assert "re-queued stalled dataset" not in worker.log.read_text()


def test_cancel_while_a_worker_commits_batches_leaves_no_row(worker_factory, api):
    rows = tricky_rows(300_000, seed=19)
    worker = worker_factory()
    # Batches of 500 rows: the ingest commits one every few milliseconds for a second or
    # more, and the cancel races with those commits (the worker is not frozen).
    worker.start(extra_env={"CSVAULT_INGEST_BATCH_ROWS": "500"})
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    wait_for_progress(dataset_id)
    response = api.post(f"/api/datasets/{dataset_id}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["error"]["code"] == "cancelled"
    # The cancel came mid-way: some batches were committed, not all.
    assert 0 < Dataset.objects.get(id=dataset_id).rows_processed < len(rows)
    # The run finds out at its next batch and stops, writing nothing more.
    worker.wait_for_log(f"ingest of {dataset_id} stopped: no longer owned by attempt 1")
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.status, dataset.attempts, dataset.row_count) == ("cancelled", 1, None)
    assert dataset.rows_processed < len(rows)
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()
    assert api.get(f"/api/datasets/{dataset_id}/rows/").status_code == 409
    assert api.get(f"/api/datasets/{dataset_id}/progress/").json()["status"] == "cancelled"
    # The worker is free again: it ingests the next upload.
    later = upload(api, to_csv(tricky_rows(1000, seed=20))).json()["id"]
    assert wait_for_status(later, {"completed", "failed"}).status == "completed"
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()
