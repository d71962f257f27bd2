"""A resumable upload started on one web process and finished on another that shares
no disk with it (state in the database, file in the shared store), with tus's own
Python client."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from tusclient import client as tus

from config.storage import datasets_storage
from csvault.datasets.models import Dataset
from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.scan import dataset_scan
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import stored_rows, web_process
from tests.storage.conftest import s3_env

CHUNK = 5 * 2**20


@pytest.fixture(scope="module")
def rows() -> list[list[str]]:
    return tricky_rows(780_000)  # about 52 MB of CSV


@pytest.mark.integration
@pytest.mark.parametrize("store", ["local", "s3"])
def test_a_50_mb_upload_stopped_after_two_chunks_resumes_on_another_host(
    transactional_db: None, store: str, rows: list[list[str]], user: Any, settings: Any,
    tmp_path: Path, request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    if store == "s3":
        server, bucket = request.getfixturevalue("s3_server"), request.getfixturevalue("bucket")
        storage_env = s3_env(server, bucket)
        request.getfixturevalue("s3")  # this process reads the same bucket
    else:
        shared = tmp_path / "shared-files"
        storage_env = {"STORAGE_URL": f"file://{shared}"}
        settings.STORAGES = {**settings.STORAGES, "datasets": datasets_storage(f"file://{shared}")}
    data = to_csv(rows)
    assert len(data) > 50 * 10**6
    headers = {"Authorization": f"Token {user.auth_token.key}"}
    host_a = {**storage_env, "CSVAULT_DATA_DIR": str(tmp_path / "host-a")}
    host_b = {**storage_env, "CSVAULT_DATA_DIR": str(tmp_path / "host-b")}

    with web_process(host_a, tmp_path / "a.log") as url_a:
        first = tus.TusClient(f"{url_a}/api/uploads/", headers=headers)
        uploader = first.uploader(
            file_stream=io.BytesIO(data), chunk_size=CHUNK, metadata={"filename": "big.csv"}
        )
        uploader.upload_chunk()
        uploader.upload_chunk()
    assert uploader.url is not None
    dataset = Dataset.objects.get(id=uploader.url.rsplit("/", 1)[1])
    assert (dataset.status, dataset.bytes_received) == ("uploading", 2 * CHUNK)

    with web_process(host_b, tmp_path / "b.log") as url_b:
        upload_path = uploader.url.split("/api/", 1)[1]
        second = tus.TusClient(f"{url_b}/api/uploads/", headers=headers)
        resumed = second.uploader(
            file_stream=io.BytesIO(data), chunk_size=CHUNK, url=f"{url_b}/api/{upload_path}"
        )
        assert resumed.offset == 2 * CHUNK
        resumed.upload()

    dataset.refresh_from_db()
    assert dataset.status == "pending", dataset.error
    assert dataset.bytes_received == len(data)
    assert dataset_scan(dataset_id=dataset.id, on_clean=None).status == "queued"
    assert dataset_ingest(dataset_id=dataset.id).status == "completed"
    assert [values for _, values in stored_rows(dataset.id)] == rows
    for host in ("host-a", "host-b"):
        assert not [p for p in (tmp_path / host).rglob("*") if str(dataset.id) in p.name], host
