"""Services that write datasets: create (upload), cancel, delete."""

from __future__ import annotations

import logging
import unicodedata
import uuid

from django.contrib.auth.models import User
from django.core.files.storage import storages
from django.db import transaction
from django.utils import timezone

from csvault.core import metrics
from csvault.core.errors import UploadRejected
from csvault.crypto.active import get_keyring
from csvault.datasets.cache import owner_list_changed
from csvault.datasets.models import FINAL_STATUSES, Dataset, DatasetStatus
from csvault.datasets.quotas import quota_check
from csvault.datasets.rowstore import rows_delete
from csvault.datasets.selectors import visible_datasets
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


# Magic numbers of common binary formats, checked whatever the name or declared type: a
# PDF or a ZIP can start with pages of NUL-free bytes. Only prefixes no CSV file starts with.
_BINARY_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF87a": "a GIF image",
    b"GIF89a": "a GIF image",
    b"%PDF-": "a PDF document",
    b"PK\x03\x04": "a ZIP archive (or an Excel/Office file)",
    b"PK\x05\x06": "a ZIP archive",
    b"PK\x07\x08": "a ZIP archive",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": "an old Excel/Office file",
    b"\x1f\x8b": "a gzip archive",
    b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive",
    b"Rar!\x1a\x07": "a RAR archive",
    b"\xfd7zXZ\x00": "an xz archive",
    b"\x7fELF": "an ELF executable",
    b"\xcf\xfa\xed\xfe": "a Mach-O executable",
    b"\xca\xfe\xba\xbe": "a Mach-O or Java class file",
}


def _check_looks_like_text(head: bytes) -> None:
    for magic, kind in _BINARY_MAGIC.items():
        if head.startswith(magic):
            raise UploadRejected(
                f"The file is not a CSV text file: it looks like {kind}.",
                code="not_csv",
                status_code=415,
            )
    # Text files have no NUL byte; UTF-16 (with a BOM) is the exception.
    if b"\0" in head and not head.startswith(_UTF16_BOMS):
        sample = head[:64]
        pairs = [sample[i : i + 2] for i in range(0, len(sample) - 1, 2)]
        if pairs and all(pair.count(0) == 1 for pair in pairs):
            raise UploadRejected(
                "The file looks like UTF-16 text without a byte order mark. "
                "Save it as UTF-8 (or UTF-16 with a byte order mark) and upload it again.",
                code="not_csv",
                status_code=415,
            )
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
    idempotency_key: str = "",
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
            # Lock the owner so concurrent uploads pass the quota one at a time.
            User.objects.select_for_update().filter(pk=owner.pk).first()
            if idempotency_key:
                # A retry that raced the first request: that one won; this file goes.
                earlier = dataset_by_idempotency_key(owner=owner, key=idempotency_key)
                if earlier is not None:
                    raise IdempotentReplay(earlier)
            quota_check(owner=owner, incoming_bytes=upload.size or 0)
            dataset = Dataset.objects.create(
                idempotency_key=idempotency_key,
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
    metrics.record_upload(dataset_id=dataset.id, size=dataset.size)
    owner_list_changed(owner.pk)
    logger.info("dataset %s uploaded: %d bytes", dataset.id, dataset.size)
    return dataset


class IdempotentReplay(Exception):
    """An upload with an Idempotency-Key already used by the owner: here is that dataset."""

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(str(dataset.id))
        self.dataset = dataset


def dataset_by_idempotency_key(*, owner: User, key: str) -> Dataset | None:
    return visible_datasets().filter(owner=owner, idempotency_key=key).first()


def dataset_cancel(*, dataset: Dataset) -> Dataset:
    """Stop a dataset that has not finished; its rows are dropped. Final ones stay as they are."""
    with transaction.atomic():
        cancelled = (
            Dataset.objects.for_write(dataset.id)
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
    """Crypto-shred a dataset now; purge its rows, file and record in the background.

    The wrapped data key is destroyed in the same transaction that hides the
    dataset, so from the commit on its rows and file are unreadable (backups
    included). A running scan or ingest is cancelled (its next ownership check
    fails). The purge task, re-sent by the reaper if it is lost, removes the rest.
    """
    dataset_id: uuid.UUID = dataset.id
    now = timezone.now()
    with transaction.atomic():
        # The UPDATEs lock the row: a running ingest batch commits first.
        Dataset.objects.for_write(dataset_id).exclude(status__in=FINAL_STATUSES).update(
            status=DatasetStatus.CANCELLED, finished_at=now
        )
        Dataset.objects.for_write(dataset_id).update(
            wrapped_key=b"", deleted_at=now, idempotency_key=""
        )
        from csvault.datasets.tasks import purge_dataset

        purge_dataset.delay_on_commit(str(dataset_id))  # type: ignore[attr-defined]
    logger.info("dataset %s deleted (key destroyed, purge queued)", dataset_id)


def dataset_purge(*, dataset_id: uuid.UUID) -> bool:
    """Remove a deleted dataset's rows, file and record; False if there is nothing to purge."""
    dataset = Dataset.objects.filter(id=dataset_id, deleted_at__isnull=False).first()
    if dataset is None:
        return False
    rows_delete(dataset_id=dataset_id)
    storage = storages["datasets"]
    if dataset.storage_key and storage.exists(dataset.storage_key):
        storage.delete(dataset.storage_key)
    Dataset.objects.filter(id=dataset_id, deleted_at__isnull=False).delete()
    logger.info("dataset %s purged", dataset_id)
    return True
