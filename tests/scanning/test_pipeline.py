"""The scan stage of the pipeline: upload -> scan -> ingest, with each real scanner.

Every test runs with clamd (a real daemon) and with the built-in matcher; the services
are called in-process (the worker path is covered in tests/integration).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.storage import storages

from csvault.datasets.models import Dataset, DatasetStatus, ProcessedData
from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.scan import ScanRetry, dataset_scan
from tests.helpers import Clamd, free_port, ingest, upload
from tests.scanning.samples import clean_csv, csv_with_cell, eicar

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["clamd", "builtin"])
def scanner(request: pytest.FixtureRequest, settings: Any) -> str:
    if request.param == "clamd":
        settings.CLAMD_URL = request.getfixturevalue("clamd").url
    else:
        settings.CLAMD_URL = ""
    return str(request.param)


def test_eicar_in_one_cell_is_rejected_and_its_file_destroyed(api: Any, scanner: str) -> None:
    response = upload(api, csv_with_cell(eicar(), start=5000))
    dataset = Dataset.objects.get(id=response.json()["id"])

    ingest(response)

    dataset.refresh_from_db()
    error = dataset.error or {}
    assert dataset.status == DatasetStatus.REJECTED
    assert dataset.scanner == scanner
    assert error["code"] == "malware_found"
    assert "Eicar" in error["signature"] or "EICAR" in error["signature"]
    assert error["signature"] in error["message"]
    assert not storages["datasets"].exists(dataset.storage_key)
    assert not ProcessedData.objects.filter(dataset_id=dataset.id).exists()
    # A later ingest message (a duplicate, the reaper) does nothing to it.
    assert dataset_ingest(dataset_id=dataset.id).status == "skipped"
    body = api.get(f"/api/datasets/{dataset.id}/").json()
    assert body["status"] == "rejected"
    assert body["error"]["code"] == "malware_found"
    assert api.get(f"/api/datasets/{dataset.id}/rows/").status_code == 409
    assert api.get(f"/api/datasets/{dataset.id}/export/").status_code == 409


def test_a_clean_file_is_queued_then_ingested(api: Any, scanner: str) -> None:
    response = upload(api, clean_csv(200_000))
    dataset_id = response.json()["id"]
    assert response.json()["status"] == "pending"

    assert dataset_scan(dataset_id=dataset_id, on_clean=None).status == "queued"
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.status, dataset.scanner, dataset.scan_attempts) == ("queued", scanner, 1)
    assert dataset_ingest(dataset_id=dataset_id).status == "completed"
    # Scanning twice (a duplicate message) changes nothing.
    assert dataset_scan(dataset_id=dataset_id, on_clean=None).status == "skipped"


def test_an_unscanned_dataset_is_never_ingested(api: Any, scanner: str) -> None:
    dataset_id = upload(api, clean_csv(1000)).json()["id"]

    assert dataset_ingest(dataset_id=dataset_id).status == "skipped"
    assert Dataset.objects.get(id=dataset_id).status == DatasetStatus.PENDING
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()


def test_scanner_unavailable_is_retried_then_fails_closed(api: Any, settings: Any) -> None:
    settings.CLAMD_URL = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    settings.CSVAULT_SCAN_MAX_ATTEMPTS = 2
    dataset_id = upload(api, clean_csv(1000)).json()["id"]

    with pytest.raises(ScanRetry, match="cannot connect"):
        dataset_scan(dataset_id=dataset_id, on_clean=None)
    assert Dataset.objects.get(id=dataset_id).status == DatasetStatus.PENDING
    assert dataset_ingest(dataset_id=dataset_id).status == "skipped"

    assert dataset_scan(dataset_id=dataset_id, on_clean=None).status == "failed"
    dataset = Dataset.objects.get(id=dataset_id)
    error = dataset.error or {}
    assert dataset.status == DatasetStatus.FAILED
    assert error["code"] == "scanner_unavailable"
    assert "scanner was unavailable" in error["message"]
    # No internal address in what the user (and the cache) sees.
    assert "127.0.0.1" not in error["message"]
    assert "tcp://" not in api.get(f"/api/datasets/{dataset_id}/").content.decode()
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()


def test_scanner_back_in_time_lets_the_file_through(api: Any, settings: Any, clamd: Clamd) -> None:
    settings.CLAMD_URL = f"tcp://127.0.0.1:{free_port()}"
    dataset_id = upload(api, clean_csv(1000)).json()["id"]
    with pytest.raises(ScanRetry):
        dataset_scan(dataset_id=dataset_id, on_clean=None)

    settings.CLAMD_URL = clamd.url
    assert dataset_scan(dataset_id=dataset_id, on_clean=None).status == "queued"
    assert Dataset.objects.get(id=dataset_id).scan_attempts == 2


def test_a_file_over_the_scanners_limits_is_rejected_not_passed(
    api: Any, settings: Any, small_clamd: Clamd
) -> None:
    settings.CLAMD_URL = small_clamd.url  # flags files over 1 MiB, refuses streams over 2 MiB
    for size in (1_500_000, 3_000_000):
        response = upload(api, clean_csv(size))
        dataset = Dataset.objects.get(id=ingest(response))
        error = dataset.error or {}
        assert dataset.status == DatasetStatus.REJECTED, size
        assert error["code"] == "too_large_to_scan"
        assert not ProcessedData.objects.filter(dataset_id=dataset.id).exists()


def test_cancel_during_the_scan_wait_leaves_it_cancelled(api: Any, scanner: str) -> None:
    dataset_id = upload(api, clean_csv(1000)).json()["id"]
    assert api.post(f"/api/datasets/{dataset_id}/cancel/").json()["status"] == "cancelled"

    assert dataset_scan(dataset_id=dataset_id, on_clean=None).status == "skipped"
    assert Dataset.objects.get(id=dataset_id).status == DatasetStatus.CANCELLED
