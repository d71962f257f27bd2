"""Resumable uploads (tus 1.0, csvault/datasets/tus.py speaks the protocol): the dataset
exists from the first request, ``uploading``, and takes its file chunk by chunk, from
any web host, until the last byte arrives; then it is ``pending`` like any upload.

Everything kept between requests is ciphertext under the dataset's key: whole segments
(64 KiB of plaintext, csvault/crypto/stream.py) go to the store as they fill
(``ResumableWrite``: a local file appended to, or an S3 multipart upload with its
staged remainder); the bytes past the last whole segment wait encrypted in the
database (``ResumableUpload.tail``). So every byte that arrives is kept, also when the
connection drops mid-chunk, and the offset a client reads back is exact.

State lives in the database only: ``Dataset.bytes_received`` is the offset, and
``ResumableUpload`` the rest. One request appends at a time (a lease on the row); a
second one waits for it, then finds the offset moved (409).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from csvault.core.errors import CsvaultError, UploadRejected
from csvault.core.filenames import upload_filename
from csvault.core.storage import dataset_storage
from csvault.crypto.keyring import new_data_key
from csvault.crypto.stream import SEGMENT_SIZE, SegmentSealer, open_tail, seal_tail
from csvault.csvio.sniff import not_text_reason
from csvault.datasets.cache import owner_list_changed
from csvault.datasets.keys import dataset_data_key, get_keyring
from csvault.datasets.models import Dataset, DatasetStatus, ResumableUpload
from csvault.datasets.quotas import quota_check
from csvault.datasets.services import dataset_delete, format_options, scan_later
from csvault.datasets.update import dataset_update
from csvault.datasets.uploads import HEAD_BYTES, storage_key, too_large

logger = logging.getLogger(__name__)

#: A request holds an upload's lease this long past its last sign of life.
LEASE_SECONDS = 60
#: A request finding the lease taken waits this long for it.
LEASE_WAIT_SECONDS = 20
READ_SIZE = 1 << 20
#: Checksum algorithms of the tus checksum extension.
CHECKSUMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "md5": hashlib.md5,
}


class OffsetMismatch(CsvaultError):
    status_code = 409
    default_code = "offset_mismatch"


class ChecksumMismatch(CsvaultError):
    status_code = 460
    default_code = "checksum_mismatch"


class Body(Protocol):
    """The request body (Django's HttpRequest reads it)."""

    def read(self, size: int = ..., /) -> bytes: ...


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes


def upload_create(
    *,
    owner: User,
    length: int,
    filename: str,
    name: str = "",
    delimiter: str = "",
    encoding: str = "",
    has_header: bool = True,
) -> Dataset:
    """A new dataset, ``uploading``, ready for ``length`` bytes of file."""
    limit = settings.CSVAULT_MAX_UPLOAD_BYTES
    if length > limit:
        raise too_large(limit)
    if length == 0:
        raise UploadRejected("The file is empty.", code="empty_file")
    delimiter, encoding = format_options(delimiter, encoding)
    dataset_id = uuid.uuid4()
    data_key = new_data_key()
    key_id, wrapped = get_keyring().wrap(data_key)
    sealer = SegmentSealer(data_key, dataset_id, SegmentSealer.new_prefix())
    key = storage_key(dataset_id)
    out = dataset_storage().open_resumable(key, {})
    try:
        out.append(sealer.header())
        state = out.checkpoint()
        with transaction.atomic(durable=True):
            User.objects.select_for_update().filter(pk=owner.pk).first()
            quota_check(owner=owner, incoming_bytes=length)
            shown = upload_filename(filename)
            dataset = Dataset.objects.create(
                id=dataset_id,
                owner=owner,
                name=(name.strip() or shown)[:255],
                original_filename=shown,
                storage_key=key,
                size=length,
                sha256="",
                has_header=has_header,
                delimiter=delimiter,
                encoding=encoding,
                key_id=key_id,
                wrapped_key=wrapped,
                status=DatasetStatus.UPLOADING,
            )
            ResumableUpload.objects.create(
                dataset=dataset,
                expires_at=timezone.now() + timedelta(seconds=settings.CSVAULT_UPLOAD_EXPIRES),
                prefix=sealer.prefix,
                store_state=state,
            )
    except BaseException:
        out.abort()
        raise
    finally:
        out.release()
    owner_list_changed(owner.pk)
    logger.info("resumable upload %s created: %d bytes to come", dataset_id, length)
    return dataset


def upload_get(*, owner: User, dataset_id: uuid.UUID) -> Dataset:
    """The owner's dataset that is still being uploaded; Dataset.DoesNotExist otherwise."""
    return Dataset.objects.select_related("resumable").get(
        id=dataset_id, owner=owner, deleted_at__isnull=True, status=DatasetStatus.UPLOADING
    )


def upload_append(
    *,
    owner: User,
    dataset_id: uuid.UUID,
    offset: int,
    body: Body,
    body_length: int,
    checksum: Checksum | None = None,
) -> Dataset:
    """Append ``body_length`` bytes read from ``body`` at ``offset``; returns the dataset
    (``pending`` once the last byte is in). Keeps whatever arrived if the body breaks
    off, unless a checksum was given: then the chunk counts only when whole and right.
    """
    token = _lease(owner=owner, dataset_id=dataset_id)
    try:
        dataset = upload_get(owner=owner, dataset_id=dataset_id)
        upload = dataset.resumable
        if offset != dataset.bytes_received:
            raise OffsetMismatch(
                f"The upload is at byte {dataset.bytes_received}, not {offset}.",
                offset=dataset.bytes_received,
            )
        if offset + body_length > dataset.size:
            raise UploadRejected(
                f"The chunk goes past the upload's length of {dataset.size} bytes.",
                code="past_upload_length",
            )
        return _append(dataset, upload, token, body, body_length, checksum)
    finally:
        ResumableUpload.objects.filter(dataset_id=dataset_id, lease_token=token).update(
            lease_token=None, lease_until=None
        )


def _lease(*, owner: User, dataset_id: uuid.UUID) -> uuid.UUID:
    token = uuid.uuid4()
    deadline = time.monotonic() + LEASE_WAIT_SECONDS
    while True:
        now = timezone.now()
        taken = ResumableUpload.objects.filter(
            Q(lease_until__isnull=True) | Q(lease_until__lt=now),
            dataset_id=dataset_id,
            dataset__owner=owner,
        ).update(lease_token=token, lease_until=now + timedelta(seconds=LEASE_SECONDS))
        if taken:
            return token
        if not ResumableUpload.objects.filter(dataset_id=dataset_id, dataset__owner=owner).exists():
            raise Dataset.DoesNotExist
        if time.monotonic() > deadline:
            raise OffsetMismatch("Another request is appending to this upload.")
        time.sleep(0.1)


def _append(
    dataset: Dataset,
    upload: ResumableUpload,
    token: uuid.UUID,
    body: Body,
    body_length: int,
    checksum: Checksum | None,
) -> Dataset:
    data_key = dataset_data_key(dataset)
    sealer = SegmentSealer(data_key, dataset.id, bytes(upload.prefix))
    whole = dataset.bytes_received - dataset.bytes_received % SEGMENT_SIZE
    pending = bytearray(
        open_tail(data_key, dataset.id, whole, bytes(upload.tail)) if upload.tail else b""
    )
    # The file's first bytes so far: all in ``pending`` while fewer than HEAD_BYTES.
    head = bytearray(pending[:HEAD_BYTES]) if dataset.bytes_received < HEAD_BYTES else bytearray()
    out = dataset_storage().open_resumable(dataset.storage_key, upload.store_state)
    hasher = CHECKSUMS[checksum.algorithm]() if checksum else None
    segments = SegmentSealer.segment_count(dataset.size)
    index = whole // SEGMENT_SIZE
    received = 0
    lease_renewed = time.monotonic()
    try:
        while received < body_length:
            try:
                chunk = body.read(min(READ_SIZE, body_length - received))
            except OSError:
                chunk = b""  # the client went away: keep what arrived
            if not chunk:
                break
            received += len(chunk)
            if hasher is not None:
                hasher.update(chunk)
            if len(head) < HEAD_BYTES and dataset.bytes_received < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            pending += chunk
            while index < segments and len(pending) >= _segment_size(dataset.size, index):
                size = _segment_size(dataset.size, index)
                out.append(sealer.seal(index, pending[:size], final=index == segments - 1))
                del pending[:size]
                index += 1
                whole += size
            if time.monotonic() - lease_renewed > LEASE_SECONDS / 3:
                _renew(dataset.id, token)
                lease_renewed = time.monotonic()
        if checksum is not None:
            assert hasher is not None
            if received < body_length or hasher.digest() != checksum.digest:
                raise ChecksumMismatch(
                    "The chunk's checksum does not match; it was not kept.",
                )
        if head:  # the first bytes of the file: they must look like CSV text
            _check_head(dataset, bytes(head))
        offset = whole + len(pending)
        state = out.checkpoint()
    finally:
        out.release()
    tail = seal_tail(data_key, dataset.id, whole, pending) if pending else None
    with transaction.atomic():
        ResumableUpload.objects.filter(dataset_id=dataset.id).update(store_state=state, tail=tail)
        dataset_update(dataset_id=dataset.id, bytes_received=offset)
    if offset == dataset.size:
        return upload_complete(dataset_id=dataset.id)
    dataset.bytes_received = offset
    return dataset


def _segment_size(size: int, index: int) -> int:
    return min(SEGMENT_SIZE, size - index * SEGMENT_SIZE)


def _renew(dataset_id: uuid.UUID, token: uuid.UUID) -> None:
    ResumableUpload.objects.filter(dataset_id=dataset_id, lease_token=token).update(
        lease_until=timezone.now() + timedelta(seconds=LEASE_SECONDS)
    )


def _check_head(dataset: Dataset, head: bytes) -> None:
    """The first bytes must look like CSV text, as for a multipart upload."""
    reason = not_text_reason(head)
    if reason is not None:
        dataset_delete(dataset=dataset)
        raise UploadRejected(reason, code="not_csv", status_code=415)


def upload_complete(*, dataset_id: uuid.UUID) -> Dataset:
    """The last byte is in: make the file whole in the store, then the dataset is
    ``pending`` and its scan is sent. Safe to repeat (a request that died half-way)."""
    dataset = Dataset.objects.select_related("resumable").get(id=dataset_id)
    if dataset.status != DatasetStatus.UPLOADING:
        return dataset
    upload = dataset.resumable
    out = dataset_storage().open_resumable(dataset.storage_key, upload.store_state)
    try:
        out.finish()
    finally:
        out.release()
    with transaction.atomic():
        if dataset_update(
            dataset_id=dataset.id,
            where=Q(status=DatasetStatus.UPLOADING),
            status=DatasetStatus.PENDING,
        ):
            ResumableUpload.objects.filter(dataset_id=dataset.id).delete()
            transaction.on_commit(scan_later(dataset.id), robust=True)
    owner_list_changed(dataset.owner_id)
    logger.info("resumable upload %s complete: %d bytes", dataset.id, dataset.size)
    dataset.refresh_from_db()
    return dataset
