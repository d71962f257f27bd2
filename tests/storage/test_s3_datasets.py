"""Datasets on S3 (moto's real HTTP server): upload, scan, ingest, read back, delete;
and what a user sees when the store is down."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from csvault.core.health import readiness
from csvault.datasets.models import Dataset
from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.purge import dataset_purge
from csvault.pipeline.scan import dataset_scan
from tests.csvdata import MARKER, to_csv, tricky_rows
from tests.helpers import free_port, ingest, read_all_rows, stored_names, upload
from tests.storage.conftest import s3_storage_settings

ROWS = tricky_rows(3000)


def dead_store(settings: Any) -> None:
    """Point the dataset store at a port nothing listens on."""
    settings.STORAGES = {
        **settings.STORAGES,
        "datasets": s3_storage_settings(f"http://127.0.0.1:{free_port()}", "b", connect_timeout=1),
    }


def test_a_dataset_on_s3_is_ingested_read_back_and_its_object_is_only_ciphertext(api, s3):
    data = to_csv(ROWS)
    dataset_id = ingest(upload(api, data))
    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.status == "completed", dataset.error
    assert [r["values"] for r in read_all_rows(api, dataset_id)[1]] == ROWS
    assert stored_names() == {dataset.storage_key}
    stored = s3.client.get_object(Bucket=s3.bucket_name, Key=f"files/{dataset.storage_key}")
    ciphertext = stored["Body"].read()
    assert len(ciphertext) > len(data)
    assert MARKER.encode() in data
    assert MARKER.encode() not in ciphertext
    assert b"name 1234" not in ciphertext


def test_deleting_a_dataset_removes_its_object(api, s3):
    dataset_id = ingest(upload(api, to_csv(ROWS[:50])))
    assert api.delete(f"/api/datasets/{dataset_id}/").status_code == 204
    assert stored_names() != set()
    assert dataset_purge(dataset_id=dataset_id) is True
    assert stored_names() == set()


def test_a_refused_upload_leaves_nothing_in_the_bucket(api, s3):
    response = upload(api, b"\x00\x01binary\x00" * 100)
    assert response.status_code == 415
    assert stored_names() == set()
    assert not Dataset.objects.exists()


def test_with_the_store_down_an_upload_is_a_503_json_error_and_leaves_no_dataset(api, settings):
    dead_store(settings)
    response = upload(api, to_csv(ROWS[:50]))
    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "storage_unavailable"
    assert "127.0.0.1" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert not Dataset.objects.exists()


def test_readyz_names_storage_when_the_bucket_is_missing(db, settings, s3_server):
    settings.STORAGES = {
        **settings.STORAGES,
        "datasets": s3_storage_settings(s3_server.url, "no-such-bucket"),
    }
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["storage"]
    assert "does not exist" in readiness()[1]["storage"]["error"]


def test_readyz_names_storage_when_the_store_is_unreachable(db, settings):
    dead_store(settings)
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["storage"]
    assert "unreachable" in readiness()[1]["storage"]["error"]
    assert "127.0.0.1" not in response.content.decode()


def test_a_store_outage_during_ingest_is_retried_and_loses_nothing(
    transactional_db, api, settings, s3
):
    working = settings.STORAGES
    dataset_id = upload(api, to_csv(ROWS)).json()["id"]
    assert dataset_scan(dataset_id=dataset_id, on_clean=None).status == "queued"
    dead_store(settings)
    with pytest.raises(OSError, match="unavailable"):
        dataset_ingest(dataset_id=dataset_id)
    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.status == "queued"  # handed back, not failed: a retry takes it
    settings.STORAGES = working
    assert dataset_ingest(dataset_id=dataset_id).status == "completed"
    assert Dataset.objects.get(id=dataset_id).row_count == len(ROWS)
