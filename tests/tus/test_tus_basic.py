from __future__ import annotations

import io

import pytest
from tusclient import client as tus

from csvault.datasets.models import Dataset
from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.scan import dataset_scan
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import read_all_rows, stored_rows


@pytest.mark.django_db(transaction=True)
def test_tuspy_uploads_in_chunks_and_resumes(live_server, user, api):
    rows = tricky_rows(60_000)
    data = to_csv(rows)
    headers = {"Authorization": f"Token {user.auth_token.key}"}
    first = tus.TusClient(f"{live_server.url}/api/uploads/", headers=headers)
    uploader = first.uploader(
        file_stream=io.BytesIO(data), chunk_size=1_000_003, metadata={"filename": "t.csv"}
    )
    uploader.upload_chunk()
    uploader.upload_chunk()
    assert uploader.url is not None
    dataset_id = uploader.url.rsplit("/", 1)[1]
    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.status == "uploading"
    assert dataset.bytes_received == 2_000_006
    second = tus.TusClient(f"{live_server.url}/api/uploads/", headers=headers)
    resumed = second.uploader(file_stream=io.BytesIO(data), chunk_size=3_000_000, url=uploader.url)
    assert resumed.offset == 2_000_006
    resumed.upload()
    dataset.refresh_from_db()
    assert dataset.status == "pending", dataset.error
    assert dataset_scan(dataset_id=dataset.id, on_clean=None).status == "queued"
    assert dataset_ingest(dataset_id=dataset.id).status == "completed"
    assert [values for _, values in stored_rows(dataset.id)] == rows
    assert len(read_all_rows(api, dataset.id)[1]) == len(rows)
