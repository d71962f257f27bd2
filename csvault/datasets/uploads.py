"""Streaming upload handler: count, hash, encrypt and store the file as it arrives.

Installed as the only entry of ``FILE_UPLOAD_HANDLERS``, so no multipart body
is ever written anywhere in plain text, whoever parses it (DRF, the CSRF
check, a form). The plaintext exists only chunk by chunk in memory; the
ciphertext goes straight to the dataset store (csvault/core/storage.py: a
local ``.part`` file or an S3 multipart upload), never to a temporary copy.

The stored file belongs to the request until ``dataset_create`` keeps it:
Django closes every uploaded file when the response is done, and closing an
:class:`EncryptedUpload` that was not kept deletes it from the store.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest

from csvault.core.errors import UploadRejected
from csvault.core.storage import WriteStream, dataset_storage
from csvault.crypto.keyring import new_data_key
from csvault.crypto.stream import StreamEncryptor

logger = logging.getLogger(__name__)

UPLOAD_FIELD = "file"
HEAD_BYTES = 8192
# Multipart framing and the small form fields ride on top of the file.
MULTIPART_OVERHEAD = 64 * 1024


def too_large(limit: int) -> UploadRejected:
    return UploadRejected(
        f"The file is larger than the limit of {limit} bytes.",
        code="too_large",
        status_code=413,
        limit=limit,
    )


def storage_key(dataset_id: uuid.UUID) -> str:
    """Where a dataset's file lives in the store."""
    return f"datasets/{dataset_id}.csvf"


class EncryptedUpload(UploadedFile):
    """An uploaded file, stored as ciphertext under ``storage_key`` as it arrived.

    ``size`` is the plaintext size; ``data_key`` and ``dataset_id`` are the
    key and the id the ciphertext is bound to; ``head`` is the first bytes of
    plaintext, kept in memory for type sniffing. Reading it gives nothing: the
    content is in the store. :meth:`close` deletes the stored file unless
    :meth:`keep` was called.
    """

    dataset_id: uuid.UUID
    data_key: bytes
    sha256: str
    head: bytes
    storage_key: str
    stored: bool = False
    kept: bool = False

    def keep(self) -> None:
        """The stored file now belongs to a dataset: closing no longer deletes it."""
        self.kept = True

    def close(self) -> None:
        if self.stored and not self.kept:
            self.stored = False
            try:
                dataset_storage().delete(self.storage_key)
            except OSError:
                # Closing must not hide the request's own answer; the file is ciphertext
                # whose key was never saved.
                logger.warning("could not delete the unused upload %s", self.storage_key)
        super().close()


class EncryptingUploadHandler(FileUploadHandler):
    # What Django's multipart parser reads and hands over at a time: four of gunicorn's
    # 64 KiB body reads, four file segments. The parser copies each chunk about three
    # times (joining, trimming); at 1 MiB glibc returns those buffers to the kernel and
    # faults them in again, about 80,000 page faults per 116 MB file, and smaller chunks
    # cost more Python a byte (docs/performance.md, "Web server settings").
    chunk_size = 256 * 1024

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.max_bytes: int = settings.CSVAULT_MAX_UPLOAD_BYTES
        self.files_seen = 0
        # Not named ``file``: Django's parser calls ``handler.file.close()`` when it has one.
        self.upload: EncryptedUpload | None = None
        self._out: WriteStream | None = None

    def handle_raw_input(
        self,
        input_data: Any,
        META: dict[str, Any],
        content_length: int,
        boundary: str,
        encoding: str | None = None,
    ) -> None:
        # An honest Content-Length already over the limit: refuse before reading.
        if content_length > self.max_bytes + MULTIPART_OVERHEAD:
            raise too_large(self.max_bytes)

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, *args, **kwargs)
        self.files_seen += 1
        if field_name != UPLOAD_FIELD or self.files_seen > 1:
            self._discard()
            raise UploadRejected(
                f"Send exactly one file, in the multipart field '{UPLOAD_FIELD}'.",
                code="one_file_expected",
            )
        upload = EncryptedUpload(
            io.BytesIO(), self.file_name or "upload.csv", self.content_type, 0, None
        )
        upload.dataset_id = uuid.uuid4()
        upload.data_key = new_data_key()
        upload.head = b""
        upload.storage_key = storage_key(upload.dataset_id)
        self.upload = upload
        self._sha = hashlib.sha256()
        self._size = 0
        self._encryptor = StreamEncryptor(upload.data_key, upload.dataset_id)
        self._out = dataset_storage().open_write(upload.storage_key)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        assert self.upload is not None
        self._size += len(raw_data)
        if self._size > self.max_bytes:
            self._discard()
            raise too_large(self.max_bytes)
        self._sha.update(raw_data)
        if len(self.upload.head) < HEAD_BYTES:
            self.upload.head += raw_data[: HEAD_BYTES - len(self.upload.head)]
        self._write(self._encryptor.update(raw_data))

    def _write(self, data: bytes) -> None:
        assert self._out is not None
        try:
            self._out.write(data)
        except BaseException:
            self._discard()
            raise

    def file_complete(self, file_size: int) -> EncryptedUpload | None:
        upload = self.upload
        if upload is None or self._out is None:
            return None
        self._write(self._encryptor.finalize())
        try:
            self._out.commit()
        except BaseException:
            self._discard()
            raise
        self._out = None
        upload.stored = True
        upload.size = self._size
        upload.sha256 = self._sha.hexdigest()
        return upload

    def upload_interrupted(self) -> None:
        self._discard()

    def abort_unfinished(self) -> None:
        """Called after every request (csvault.core.middleware): a file still being
        written means parsing stopped mid-file; nothing of it may stay in the store."""
        if self._out is not None:
            self._discard()

    def _discard(self) -> None:
        """Drop a partial upload: nothing of it stays in the store."""
        out, self._out = self._out, None
        if out is not None:
            out.abort()
        if self.upload is not None:
            self.upload.close()
            self.upload = None
