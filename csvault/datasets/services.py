"""Services that write datasets: create (upload), cancel, delete (key rotation: rotation.py)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from csvault.core import metrics
from csvault.core.errors import UploadRejected
from csvault.core.filenames import upload_filename
from csvault.csvio.detect import delimiter_option, encoding_option
from csvault.csvio.errors import CsvDataError
from csvault.csvio.limits import check_delimiter
from csvault.csvio.sniff import not_text_reason
from csvault.datasets.cache import owner_list_changed
from csvault.datasets.keys import get_keyring
from csvault.datasets.models import FINAL_STATUSES, Dataset, DatasetStatus
from csvault.datasets.quotas import quota_check
from csvault.datasets.selectors import dataset_by_idempotency_key
from csvault.datasets.update import dataset_update
from csvault.datasets.uploads import EncryptedUpload
from csvault.pipeline.rowstore import rows_delete
from csvault.pipeline.tasks import purge_dataset, scan_dataset

logger = logging.getLogger(__name__)


def format_options(delimiter: str | None, encoding: str | None) -> tuple[str, str]:
    """An upload's ``delimiter`` and ``encoding`` as stored (``""``: detect them), by
    csvio's rules (``tab`` or ``\\t`` for a Tab); UploadRejected (400) otherwise."""
    try:
        chosen = delimiter_option(delimiter)
        if chosen:
            check_delimiter(chosen)
        return chosen, encoding_option(encoding)
    except CsvDataError as exc:
        raise UploadRejected(exc.message, code=exc.code) from None


def _check_upload(upload: EncryptedUpload) -> None:
    if upload.size == 0:
        raise UploadRejected("The file is empty.", code="empty_file")
    reason = not_text_reason(upload.head)
    if reason is not None:
        raise UploadRejected(reason, code="not_csv", status_code=415)


def dataset_create(
    *,
    owner: User,
    upload: EncryptedUpload,
    name: str = "",
    has_header: bool = True,
    delimiter: str = "",
    encoding: str = "",
    idempotency_key: str = "",
) -> Dataset:
    """Make a dataset of an uploaded file (already encrypted and in the store) and queue
    its malware scan after commit. Whatever fails, the stored file goes with the request.
    An empty ``delimiter`` or ``encoding`` is detected by the scan."""
    try:
        delimiter, encoding = format_options(delimiter, encoding)
        _check_upload(upload)
        filename = upload_filename(upload.name or "")
        key_id, wrapped = get_keyring().wrap(upload.data_key)
        with transaction.atomic(durable=True):
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
                storage_key=upload.storage_key,
                size=upload.size or 0,
                bytes_received=upload.size or 0,
                sha256=upload.sha256,
                has_header=has_header,
                delimiter=delimiter,
                encoding=encoding,
                key_id=key_id,
                wrapped_key=wrapped,
                status=DatasetStatus.PENDING,
            )
            upload.keep()  # from here on the file is the dataset's, whatever else fails
            # Robust: a broker outage at this point leaves a pending dataset that the
            # reaper re-sends, not an error for an upload that was saved.
            transaction.on_commit(scan_later(dataset.id), robust=True)
    finally:
        upload.close()  # deletes the stored file unless the dataset kept it
    metrics.record_upload(dataset_id=dataset.id, size=dataset.size)
    owner_list_changed(owner.pk)
    logger.info("dataset %s uploaded: %d bytes", dataset.id, dataset.size)
    return dataset


def scan_later(dataset_id: uuid.UUID) -> Callable[[], None]:
    """An on-commit callback that sends the dataset's scan."""

    def send_scan() -> None:
        scan_dataset.delay(str(dataset_id))

    return send_scan


class IdempotentReplay(Exception):
    """An upload with an Idempotency-Key already used by the owner: here is that dataset."""

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(str(dataset.id))
        self.dataset = dataset


def dataset_cancel(*, dataset: Dataset) -> Dataset:
    """Stop a dataset that has not finished; its rows are dropped. Final ones stay as they are."""
    with transaction.atomic():
        cancelled = dataset_update(
            dataset_id=dataset.id,
            where=~Q(status__in=FINAL_STATUSES),
            status=DatasetStatus.CANCELLED,
            finished_at=timezone.now(),
            error={"code": "cancelled", "message": "Cancelled by the owner."},
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
        dataset_update(
            dataset_id=dataset_id,
            where=~Q(status__in=FINAL_STATUSES),
            status=DatasetStatus.CANCELLED,
            finished_at=now,
        )
        dataset_update(dataset_id=dataset_id, wrapped_key=b"", deleted_at=now, idempotency_key="")
        purge_dataset.delay_on_commit(str(dataset_id))
    logger.info("dataset %s deleted (key destroyed, purge queued)", dataset_id)
