"""End to end through a real Celery worker process and the configured broker and database."""

import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from csvault.datasets.models import Dataset, ProcessedData
from tests.csvdata import HEADER, MARKER, to_csv, tricky_rows
from tests.helpers import (
    queue_length,
    read_all_rows,
    stage_queue,
    upload,
    wait_for_status,
    wait_until,
)
from tests.scanning.samples import csv_with_cell, eicar

pytestmark = pytest.mark.integration


def test_a_worker_ingests_20000_tricky_rows_value_for_value(celery_worker, api):
    rows = tricky_rows(20_000)
    response = upload(api, to_csv(rows))
    assert response.status_code == 201
    dataset_id = response.json()["id"]
    dataset = wait_for_status(dataset_id, {"completed", "failed"})
    assert dataset.status == "completed", dataset.error
    detail = api.get(f"/api/datasets/{dataset_id}/").json()
    assert detail["row_count"] == 20_000
    assert detail["progress"]["percent"] == 100.0
    assert detail["progress"]["rows_per_second"] > 0
    columns, got = read_all_rows(api, dataset_id)
    assert columns == HEADER
    assert [r["row"] for r in got] == list(range(1, 20_001))
    assert [r["values"] for r in got] == rows


def test_a_worker_fails_a_ragged_file_naming_its_row(celery_worker, api):
    content = to_csv(tricky_rows(500)) + b"1,2,3\r\n" + to_csv(tricky_rows(10), header=None)
    dataset_id = upload(api, content).json()["id"]
    dataset = wait_for_status(dataset_id, {"completed", "failed"})
    assert dataset.status == "failed"
    assert dataset.error["code"] == "ragged_row"
    assert dataset.error["row"] == 501
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()
    assert api.get(f"/api/datasets/{dataset_id}/rows/").status_code == 409


def _database_dump() -> bytes:
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return Path(connection.settings_dict["NAME"]).read_bytes()
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump is needed to check the database dump"
    db = connection.settings_dict
    return subprocess.run(
        [pg_dump, "-h", db["HOST"] or "localhost", "-p", str(db["PORT"] or 5432),
         "-U", db["USER"] or "postgres", "--data-only", db["NAME"]],
        check=True, capture_output=True,
    ).stdout  # fmt: skip


def test_no_cell_value_is_in_plain_text_in_the_database_or_the_data_dir(celery_worker, api):
    rows = tricky_rows(5000)
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    assert wait_for_status(dataset_id, {"completed", "failed"}).status == "completed"
    marker = MARKER.encode()
    dump = _database_dump()
    assert len(dump) > 5000 * 50  # the rows are in there, as ciphertext
    assert marker not in dump
    assert b"name 4999" not in dump
    for path in Path(settings.DATA_DIR).rglob("*"):
        if path.is_file():
            assert marker not in path.read_bytes(), path
    # Nor in the worker's log, nor anywhere in Redis (broker messages, cache).
    assert marker not in celery_worker.log.read_bytes()
    api.get(f"/api/datasets/{dataset_id}/")
    api.get(f"/api/datasets/{dataset_id}/rows/")
    if settings.CELERY_BROKER_URL.startswith("redis://"):
        import redis

        for url in {settings.CELERY_BROKER_URL, settings.CACHES["default"]["LOCATION"]}:
            client = redis.Redis.from_url(url)
            for key in client.scan_iter("*"):
                assert marker not in (client.dump(key) or b""), key


def test_a_worker_rejects_eicar_in_one_cell_and_writes_no_row(celery_worker, api):
    dataset_id = upload(api, csv_with_cell(eicar(), start=20_000)).json()["id"]
    dataset = wait_for_status(dataset_id, {"completed", "failed", "rejected"})
    assert dataset.status == "rejected"
    assert dataset.error["code"] == "malware_found"
    assert dataset.scanner == ("clamd" if settings.CLAMD_URL else "builtin")
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()
    assert api.get(f"/api/datasets/{dataset_id}/rows/").status_code == 409


def test_scans_and_ingests_are_consumed_from_their_own_queues(worker_factory, api):
    scanner = worker_factory()
    scanner.start(stages=("scan",))
    dataset_id = upload(api, to_csv(tricky_rows(2000))).json()["id"]
    assert wait_for_status(dataset_id, {"queued", "failed", "rejected"}).status == "queued"
    # The scan handed over: the ingest message waits in the ingest queue, untouched.
    wait_until(lambda: queue_length(stage_queue("ingest")) == 1, what="the ingest message queued")
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.status, dataset.attempts, dataset.rows_processed) == ("queued", 0, 0)
    ingester = worker_factory()
    ingester.start(stages=("ingest",))
    assert wait_for_status(dataset_id, {"completed", "failed"}).status == "completed"
    assert "csvault.scan_dataset[" not in ingester.log.read_text()  # "Task name[id] received"
    assert "csvault.ingest_dataset[" not in scanner.log.read_text()
    assert "csvault.ingest_dataset[" in ingester.log.read_text()


def test_a_deleted_dataset_is_purged_by_the_worker(celery_worker, api):
    dataset_id = upload(api, to_csv(tricky_rows(3000))).json()["id"]
    assert wait_for_status(dataset_id, {"completed", "failed"}).status == "completed"
    assert api.delete(f"/api/datasets/{dataset_id}/").status_code == 204
    wait_until(lambda: not Dataset.objects.filter(id=dataset_id).exists(), what="purged")
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()
