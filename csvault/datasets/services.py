"""Services that write datasets: create (upload), cancel, delete."""

from __future__ import annotations

import logging
import unicodedata
import uuid

from django.contrib.auth.models import User
from django.core.files.storage import storages
from django.db import transaction
from django.utils import timezone

from csvault.core.errors import UploadRejected
from csvault.crypto.active import get_keyring
from csvault.datasets.models import FINAL_STATUSES, Dataset, DatasetStatus
from csvault.datasets.rowstore import rows_delete
from csvault.datasets.uploads import EncryptedUpload

logger = logging.getLogger(__name__)

_BAD_DELIMITERS = {'"', "\r", "\n", "\0"}
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def sanitize_filename(name: str) -> str:
    """A display-only version of a client file name: no paths, controls or bidi tricks."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(
        ch for ch in name if unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co", "Cn"}
    )
    kept = kept.strip().strip(".")
    return kept[:200] or "upload.csv"


def _check_looks_like_text(head: bytes) -> None:
    # Text files have no NUL byte; UTF-16 (with a BOM) is the exception.
    if b"\0" in head and not head.startswith(_UTF16_BOMS):
        raise UploadRejected(
            "The file is not a CSV text file (it contains binary data).",
            code="not_csv",
            status_code=415,
        )


def dataset_create(
    *,
    owner: User,
    upload: EncryptedUpload,
    name: str = "",
    has_header: bool = True,
    delimiter: str = ",",
) -> Dataset:
    """Store an uploaded (already encrypted) file and queue its malware scan after commit."""
    if len(delimiter) != 1 or delimiter in _BAD_DELIMITERS:
        raise UploadRejected(
            "The delimiter must be a single character other than a quote or a line break.",
            code="invalid_delimiter",
        )
    if upload.size == 0:
        raise UploadRejected("The file is empty.", code="empty_file")
    _check_looks_like_text(upload.head)

    filename = sanitize_filename(upload.name or "")
    key_id, wrapped = get_keyring().wrap(upload.data_key)
    storage = storages["datasets"]
    storage_key = f"datasets/{upload.dataset_id}.csvf"
    stored_as = storage.save(storage_key, upload)
    try:
        with transaction.atomic():
            dataset = Dataset.objects.create(
                id=upload.dataset_id,
                owner=owner,
                name=(name.strip() or filename)[:255],
                original_filename=filename,
                storage_key=stored_as,
                size=upload.size or 0,
                sha256=upload.sha256,
                has_header=has_header,
                delimiter=delimiter,
                key_id=key_id,
                wrapped_key=wrapped,
                status=DatasetStatus.PENDING,
            )
            from csvault.datasets.tasks import scan_dataset

            scan_dataset.delay_on_commit(str(dataset.id))  # type: ignore[attr-defined]
    except BaseException:
        storage.delete(stored_as)
        raise
    logger.info("dataset %s uploaded: %d bytes", dataset.id, dataset.size)
    return dataset


def dataset_cancel(*, dataset: Dataset) -> Dataset:
    """Stop a dataset that has not finished; its rows are dropped. Final ones stay as they are."""
    with transaction.atomic():
        cancelled = (
            Dataset.objects.filter(id=dataset.id)
            .exclude(status__in=FINAL_STATUSES)
            .update(
                status=DatasetStatus.CANCELLED,
                finished_at=timezone.now(),
                error={"code": "cancelled", "message": "Cancelled by the owner."},
            )
        )
        if cancelled:
            rows_delete(dataset_id=dataset.id)
    dataset.refresh_from_db()
    return dataset


def dataset_delete(*, dataset: Dataset) -> None:
    """Delete a dataset: wrapped key, rows and record together, the file after commit."""
    storage_key = dataset.storage_key
    dataset_id: uuid.UUID = dataset.id
    with transaction.atomic():
        # Shred the key first; the UPDATE also locks the row, so a running
        # ingest batch commits before the rows go.
        Dataset.objects.filter(id=dataset_id).update(wrapped_key=b"")
        rows_delete(dataset_id=dataset_id)
        Dataset.objects.filter(id=dataset_id).delete()
        transaction.on_commit(lambda: storages["datasets"].delete(storage_key))
    logger.info("dataset %s deleted", dataset_id)
