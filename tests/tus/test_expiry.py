"""Resumable uploads past their Upload-Expires are deleted by the reaper, store included."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from csvault.datasets.models import Dataset, ResumableUpload
from csvault.datasets.resumable import upload_append, upload_create
from csvault.pipeline.purge import dataset_purge
from csvault.pipeline.reaper import uploads_expire
from csvault.pipeline.tasks import purge_dataset
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import stored_names


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", ["local", "s3"])
def test_an_expired_upload_is_deleted_and_leaves_nothing_in_the_store(
    user: Any, store: str, request: pytest.FixtureRequest
) -> None:
    if store == "s3":
        request.getfixturevalue("s3")
    before = stored_names()
    data = to_csv(tricky_rows(200_000))
    expired = upload_create(owner=user, length=len(data), filename="old.csv")
    live = upload_create(owner=user, length=len(data), filename="new.csv")
    for dataset in (expired, live):
        # Past one 8 MiB part plus a staged remainder on S3; a partial segment in the database.
        chunk = data[: 9 * 2**20 + 12345]
        upload_append(
            owner=user, dataset_id=dataset.id, offset=0, body=_Reader(chunk), body_length=len(chunk)
        )
    assert stored_names() != before
    ResumableUpload.objects.filter(dataset_id=expired.id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert uploads_expire(purge=purge_dataset) == 1  # the purge task is queued; run here below
    gone = Dataset.objects.get(id=expired.id)
    assert gone.deleted_at is not None
    assert (gone.error or {}).get("code") == "upload_expired"
    assert bytes(gone.wrapped_key) == b""
    assert dataset_purge(dataset_id=expired.id) is True
    left = {name for name in stored_names() - before if str(expired.id) in name}
    assert left == set()
    assert Dataset.objects.get(id=live.id).status == "uploading"
    assert {name for name in stored_names() if str(live.id) in name}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.data[self.at : self.at + size]
        self.at += len(chunk)
        return chunk
