"""The ingest that runs while clamd decides (csvault/pipeline/scan.py), with real worker
processes and a real clamd behind a proxy that holds its answer (tests.helpers.VerdictHold):
nothing of the file is readable before the verdict, a finding deletes every row, no verdict
sends the dataset back to the scan, and a worker killed before the verdict loses nothing.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.files.storage import storages
from django.db import connection

from csvault.audit.models import AuditAction, AuditEvent
from csvault.csvio.detect import SAMPLE_BYTES
from csvault.datasets.models import Dataset, ProcessedData
from tests.csvdata import HEADER, to_csv, tricky_rows
from tests.helpers import (
    VerdictHold,
    assert_rows_exactly,
    clamd_unavailable,
    terminate_other_connections,
    upload,
    wait_for_status,
    wait_until,
)
from tests.scanning.samples import csv_with_cell, eicar

pytestmark = pytest.mark.integration

# Batches of 1,000 rows: an ingest of 20,000 rows commits 20 checkpoints.
SMALL_BATCHES = {"CSVAULT_INGEST_BATCH_ROWS": "1000"}
FAST_REAPER = {"CSVAULT_STALL_SECONDS": "5", "CSVAULT_REAP_EVERY_SECONDS": "1"}


@pytest.fixture
def hold() -> Iterator[VerdictHold]:
    upstream = os.environ.get("CSVAULT_TEST_CLAMD_URL") or settings.CLAMD_URL
    if not upstream:
        clamd_unavailable("the ingest during the scan needs clamd (CSVAULT_TEST_CLAMD_URL)")
    proxy = VerdictHold(upstream)
    try:
        yield proxy
    finally:
        proxy.release()
        proxy.close()


def wait_for_ingest_before_verdict(hold: VerdictHold, dataset_id: Any, rows: int) -> Dataset:
    """Wait until clamd has answered (held by the proxy) and the ingest has committed
    ``rows`` rows; the dataset as it is then."""
    wait_until(lambda: hold.held == 1, what="clamd's answer held")
    wait_until(
        lambda: Dataset.objects.get(id=dataset_id).rows_processed >= rows,
        what=f"{rows} rows committed before the verdict",
    )
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.status, dataset.scanner) == ("processing", ""), "the verdict came first"
    return dataset


def test_the_ingest_runs_before_the_verdict_and_nothing_shows_until_it(worker_factory, api, hold):
    rows = tricky_rows(20_000, seed=31)
    worker = worker_factory()
    worker.start(extra_env={"CLAMD_URL": hold.url, **SMALL_BATCHES})
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    # Every batch but the last is in; the last one waits for the verdict.
    wait_for_ingest_before_verdict(hold, dataset_id, len(rows) - 1000)
    detail = api.get(f"/api/datasets/{dataset_id}/").json()
    assert (detail["status"], detail["columns"]) == ("processing", [])
    assert api.get(f"/api/datasets/{dataset_id}/rows/").status_code == 409
    assert api.get(f"/api/datasets/{dataset_id}/export/").status_code == 409
    assert not AuditEvent.objects.filter(dataset_id=dataset_id, action=AuditAction.SCAN_CLEAN)

    hold.release()
    dataset = wait_for_status(dataset_id, {"completed", "failed", "rejected"})
    assert dataset.status == "completed", dataset.error
    assert (dataset.scanner, dataset.scan_attempts, dataset.attempts) == ("clamd", 1, 1)
    assert api.get(f"/api/datasets/{dataset_id}/").json()["columns"] == HEADER
    assert_rows_exactly(dataset_id, rows)
    audit = AuditEvent.objects.filter(dataset_id=dataset_id, action=AuditAction.SCAN_CLEAN)
    assert audit.count() == 1
    # The scan ran the ingest itself: no ingest message went through the broker.
    assert worker.received("csvault.scan_dataset") == 1
    assert worker.received("csvault.ingest_dataset") == 0
    # The verdict's line is logged at the commit of the batch that carried it, in the
    # writer thread, with the task's context.
    logged = [
        json.loads(line)
        for line in worker.log.read_text().splitlines()
        if f"scan of {dataset_id} clean" in line
    ]
    assert [(line.get("dataset_id"), bool(line.get("task_id"))) for line in logged] == [
        (str(dataset_id), True)
    ]


def test_a_finding_after_the_rows_are_in_rejects_and_deletes_every_row(worker_factory, api, hold):
    worker = worker_factory()
    worker.start(extra_env={"CLAMD_URL": hold.url, **SMALL_BATCHES})
    # About 20,000 rows, the EICAR string in the last few.
    dataset_id = upload(api, csv_with_cell(eicar(), start=1_200_000)).json()["id"]
    wait_for_ingest_before_verdict(hold, dataset_id, 2000)
    assert ProcessedData.objects.filter(dataset_id=dataset_id).exists()
    storage_key = Dataset.objects.get(id=dataset_id).storage_key

    hold.release()
    dataset = wait_for_status(dataset_id, {"completed", "failed", "rejected"})
    assert dataset.status == "rejected"
    assert dataset.error["code"] == "malware_found"
    assert dataset.scanner == "clamd"
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()
    assert api.get(f"/api/datasets/{dataset_id}/rows/").status_code == 409
    assert api.get(f"/api/datasets/{dataset_id}/").json()["columns"] == []
    wait_until(lambda: not storages["datasets"].exists(storage_key), what="the file destroyed")


def test_no_verdict_sends_it_back_to_the_scan_and_the_ingest_resumes(worker_factory, api, hold):
    rows = tricky_rows(20_000, seed=32)
    worker = worker_factory()
    worker.start(
        extra_env={"CLAMD_URL": hold.url, "CSVAULT_SCAN_RETRY_SECONDS": "0.5", **SMALL_BATCHES}
    )
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    before = wait_for_ingest_before_verdict(hold, dataset_id, len(rows) - 1000)

    hold.release(drop=True)  # clamd's answer never arrives; later answers pass
    dataset = wait_for_status(dataset_id, {"completed", "failed", "rejected"})
    assert dataset.status == "completed", dataset.error
    assert worker.log_count(f"scan of {dataset_id}: scanner unavailable (attempt 1)") == 1
    # Scanned again, waiting for the verdict this time; then the ingest, queued, resumed
    # after the first run's checkpoint.
    assert (dataset.scan_attempts, dataset.attempts) == (2, 2)
    assert worker.received("csvault.ingest_dataset") == 1
    assert before.rows_processed >= len(rows) - 1000
    # The second scan detected the format again, as the first did; nothing was given.
    assert (dataset.encoding, dataset.encoding_detected) == ("utf-8", True)
    assert (dataset.delimiter, dataset.delimiter_detected) == (",", True)
    # The line is logged after the commit that made the dataset completed; counted once
    # the worker has stopped, so that a second one would be seen.
    worker.wait_for_log(f"ingest of {dataset_id} completed")
    worker.stop()
    assert worker.log_count(f"ingest of {dataset_id} completed") == 1
    assert_rows_exactly(dataset_id, rows)


def test_a_worker_killed_before_the_verdict_is_scanned_again_and_resumed(worker_factory, api, hold):
    rows = tricky_rows(20_000, seed=33)
    first = worker_factory()
    first.start(extra_env={"CLAMD_URL": hold.url, **SMALL_BATCHES, **FAST_REAPER})
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    wait_for_ingest_before_verdict(hold, dataset_id, 2000)
    first.kill(signal.SIGKILL)
    hold.release()

    second = worker_factory()
    second.start(beat=True, extra_env={"CLAMD_URL": hold.url, **SMALL_BATCHES, **FAST_REAPER})
    dataset = wait_for_status(dataset_id, {"completed", "failed", "rejected"}, timeout=120)
    assert dataset.status == "completed", dataset.error
    # The reaper sent the stalled ingest back to the scan, which queued the ingest.
    assert second.log_count(f"re-queued stalled dataset {dataset_id} (processing)") == 1
    assert second.received("csvault.scan_dataset") == 1
    assert second.received("csvault.ingest_dataset") == 1
    assert (dataset.scan_attempts, dataset.attempts) == (2, 2)
    assert_rows_exactly(dataset_id, rows)


def test_with_the_setting_off_the_scan_queues_the_ingest(worker_factory, api, hold):
    hold.release()
    rows = tricky_rows(2000, seed=34)
    worker = worker_factory()
    worker.start(extra_env={"CLAMD_URL": hold.url, "CSVAULT_INGEST_DURING_SCAN": "0"})
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    assert wait_for_status(dataset_id, {"completed", "failed"}).status == "completed"
    assert worker.received("csvault.ingest_dataset") == 1
    assert_rows_exactly(dataset_id, rows)


@pytest.mark.parametrize("malware", [False, True])
def test_a_data_error_during_the_scan_waits_for_the_verdict(worker_factory, api, hold, malware):
    # About 20,000 rows, then one too wide: the ingest fails there, before the verdict.
    if malware:
        content = csv_with_cell(eicar(), start=1_200_000) + b"1,2,3,4\n"
    else:
        content = to_csv(tricky_rows(20_000, seed=35)) + b"1,2\r\n"
    worker = worker_factory()
    worker.start(extra_env={"CLAMD_URL": hold.url, **SMALL_BATCHES})
    dataset_id = upload(api, content).json()["id"]
    wait_for_ingest_before_verdict(hold, dataset_id, 2000)

    hold.release()
    dataset = wait_for_status(dataset_id, {"completed", "failed", "rejected"})
    # A finding outranks the data error; else the clean verdict is recorded with it.
    assert dataset.status == ("rejected" if malware else "failed")
    assert dataset.error["code"] == ("malware_found" if malware else "ragged_row")
    assert dataset.scanner == "clamd"
    audit = AuditEvent.objects.filter(dataset_id=dataset_id, action=AuditAction.SCAN_CLEAN)
    assert audit.count() == (0 if malware else 1)
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL backends only")
def test_a_lost_connection_after_the_verdict_resumes_the_ingest_without_a_second_scan(
    worker_factory, api
):
    rows = tricky_rows(300_000, seed=36)
    worker = worker_factory()
    worker.start(beat=True, extra_env={**SMALL_BATCHES, **FAST_REAPER})
    dataset_id = upload(api, to_csv(rows)).json()["id"]

    def verdict_recorded_mid_ingest() -> bool:
        dataset = Dataset.objects.get(id=dataset_id)
        assert not dataset.is_final, "finished before the fault could be injected"
        return dataset.scanner == "clamd" and dataset.rows_processed > 0

    wait_until(verdict_recorded_mid_ingest, what="the verdict recorded mid-ingest")
    worker.pause()
    terminate_other_connections()
    worker.resume()
    dataset = wait_for_status(dataset_id, {"completed", "failed", "rejected"}, timeout=120)
    assert dataset.status == "completed", dataset.error
    # Resumed as an ingest: the file was scanned once, its verdict audited once.
    assert (dataset.scan_attempts, dataset.attempts) == (1, 2)
    audit = AuditEvent.objects.filter(dataset_id=dataset_id, action=AuditAction.SCAN_CLEAN)
    assert audit.count() == 1
    assert_rows_exactly(dataset_id, rows)


def test_the_format_is_read_from_the_whole_file_before_the_ingest_starts(worker_factory, api, hold):
    # ASCII for far more than the detector's sample, then one cp1252 byte: only a read of
    # the whole file tells cp1252 from UTF-8, and the ingest must start knowing it.
    hold.release()
    rows = [[f"{n:06d}", "plain ascii text"] for n in range(SAMPLE_BYTES // 20)]
    rows.append(["999999", "Köln, Straße"])
    content = to_csv(rows, header=["id", "city"]).decode().encode("cp1252")
    assert content.index("ö".encode("cp1252")) > SAMPLE_BYTES
    worker = worker_factory()
    worker.start(extra_env={"CLAMD_URL": hold.url})
    dataset_id = upload(api, content).json()["id"]
    dataset = wait_for_status(dataset_id, {"completed", "failed", "rejected"})
    assert dataset.status == "completed", dataset.error
    assert (dataset.encoding, dataset.encoding_detected) == ("cp1252", True)
    assert (dataset.scanner, dataset.scan_attempts, dataset.attempts) == ("clamd", 1, 1)
    assert_rows_exactly(dataset_id, rows)
