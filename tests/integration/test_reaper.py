"""The reaper with real worker processes: it re-sends lost scans and purges and stalled
ingests, each at most once per stall period, and leaves live work alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.files.storage import storages
from django.utils import timezone

from csvault.datasets.models import Dataset, ProcessedData
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import (
    assert_rows_exactly,
    queue_length,
    queue_purge,
    stage_queue,
    upload,
    wait_for_status,
    wait_until,
)

pytestmark = pytest.mark.integration

# A heartbeat older than 5 s is stalled; the reaper ticks every second.
REAPER = {"CSVAULT_STALL_SECONDS": "5", "CSVAULT_REAP_EVERY_SECONDS": "1"}
LONG_AGO = timedelta(hours=1)


def upload_with_scan_lost(api: Any, rows: list[list[str]]) -> Any:
    """Upload while no worker runs, then drop the scan message from the broker."""
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    wait_until(lambda: queue_length(stage_queue("scan")) == 1, what="the scan message queued")
    assert queue_purge(stage_queue("scan")) == 1
    return dataset_id


@pytest.mark.parametrize("status", ["pending", "scanning"])
def test_the_reaper_re_sends_a_lost_scan(worker_factory, api, status):
    rows = tricky_rows(2000, seed=21)
    dataset_id = upload_with_scan_lost(api, rows)
    long_ago = timezone.now() - LONG_AGO
    if status == "pending":  # the message was lost before any worker took it
        Dataset.objects.filter(id=dataset_id).update(created_at=long_ago)
    else:  # the worker that claimed it died mid-scan
        Dataset.objects.filter(id=dataset_id).update(
            status="scanning", scan_attempts=1, heartbeat_at=long_ago
        )
    worker = worker_factory()
    worker.start(beat=True, extra_env=REAPER)
    dataset = wait_for_status(dataset_id, {"completed", "failed", "rejected"}, timeout=60)
    assert dataset.status == "completed", dataset.error
    assert worker.log_count(f"re-queued stalled dataset {dataset_id} ({status})") == 1
    assert dataset.scan_attempts == (1 if status == "pending" else 2)
    assert dataset.attempts == 1
    assert_rows_exactly(dataset_id, rows)


def test_the_reaper_re_sends_a_lost_purge(worker_factory, api):
    first = worker_factory()
    first.start()
    dataset_id = upload(api, to_csv(tricky_rows(3000, seed=22))).json()["id"]
    assert wait_for_status(dataset_id, {"completed", "failed"}).status == "completed"
    first.stop()
    storage_key = Dataset.objects.get(id=dataset_id).storage_key
    assert api.delete(f"/api/datasets/{dataset_id}/").status_code == 204
    wait_until(lambda: queue_length(stage_queue("default")) == 1, what="the purge message queued")
    assert queue_purge(stage_queue("default")) == 1  # the purge task is lost
    assert Dataset.objects.get(id=dataset_id).deleted_at is not None
    assert ProcessedData.objects.filter(dataset_id=dataset_id).exists()

    second = worker_factory()
    second.start(beat=True, extra_env=REAPER)
    wait_until(lambda: not Dataset.objects.filter(id=dataset_id).exists(), what="purged")
    assert second.log_count(f"re-queued stalled dataset {dataset_id} (deleted)") == 1
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()
    assert not storages["datasets"].exists(storage_key)


def test_the_reaper_re_sends_a_stalled_ingest_once_and_leaves_a_live_one(worker_factory, api):
    rows = tricky_rows(20_000, seed=23)
    scanner = worker_factory()
    scanner.start(stages=("scan",))
    stalled = upload(api, to_csv(rows)).json()["id"]
    live = upload(api, to_csv(tricky_rows(100, seed=24))).json()["id"]
    for dataset_id in (stalled, live):
        assert wait_for_status(dataset_id, {"queued", "failed", "rejected"}).status == "queued"
    wait_until(lambda: queue_length(stage_queue("ingest")) == 2, what="both ingests queued")
    scanner.stop()
    assert queue_purge(stage_queue("ingest")) == 2
    # Both claimed by an ingest run whose messages are gone: one run died an hour ago,
    # the other beats now (its worker is busy elsewhere, as far as anyone can tell).
    now = timezone.now()
    Dataset.objects.filter(id=stalled).update(
        status="processing", attempts=1, heartbeat_at=now - LONG_AGO
    )
    Dataset.objects.filter(id=live).update(status="processing", attempts=1, heartbeat_at=now)

    # A worker that runs only the reaper (stall: 30 s, so the live heartbeat stays fresh
    # and one stall period covers the ticks watched here).
    reaper = worker_factory()
    reaper.start(
        beat=True,
        stages=("default",),
        extra_env={"CSVAULT_STALL_SECONDS": "30", "CSVAULT_REAP_EVERY_SECONDS": "1"},
    )
    reaper.wait_for_log(f"re-queued stalled dataset {stalled} (processing)")
    ticks = reaper.received("csvault.reap_stalled")
    wait_until(lambda: reaper.received("csvault.reap_stalled") >= ticks + 3, what="3 more ticks")
    assert reaper.log_count("re-queued stalled dataset") == 1  # once, and not the live one
    assert queue_length(stage_queue("ingest")) == 1

    ingester = worker_factory()
    ingester.start(stages=("ingest",))
    assert wait_for_status(stalled, {"completed", "failed"}).status == "completed"
    assert Dataset.objects.get(id=stalled).attempts == 2
    assert_rows_exactly(stalled, rows)
    live_now = Dataset.objects.get(id=live)
    assert (live_now.status, live_now.attempts) == ("processing", 1)
    assert ingester.received("csvault.ingest_dataset") == 1
