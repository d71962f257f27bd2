"""Streaming upload handler: count, hash and encrypt the file as it arrives.

Installed as the only entry of ``FILE_UPLOAD_HANDLERS``, so no multipart body
is ever written to disk in plain text, whoever parses it (DRF, the CSRF
check, a form). The plaintext exists only chunk by chunk in memory.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest

from csvault.core.errors import UploadRejected
from csvault.crypto.keyring import new_data_key
from csvault.crypto.stream import StreamEncryptor

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


class EncryptedUpload(TemporaryUploadedFile):
    """An uploaded file whose temporary file holds ciphertext only.

    ``size`` is the plaintext size; ``data_key`` and ``dataset_id`` are the
    key and the id the ciphertext is bound to; ``head`` is the first bytes of
    plaintext, kept in memory for type sniffing.
    """

    dataset_id: uuid.UUID
    data_key: bytes
    sha256: str
    head: bytes


class EncryptingUploadHandler(FileUploadHandler):
    chunk_size = 1 << 20

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.max_bytes: int = settings.CSVAULT_MAX_UPLOAD_BYTES
        self.files_seen = 0
        # Not named ``file``: Django's parser calls ``handler.file.close()`` when it has one.
        self.upload: EncryptedUpload | None = None

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
        upload = EncryptedUpload(self.file_name or "upload.csv", self.content_type, 0, None)
        upload.dataset_id = uuid.uuid4()
        upload.data_key = new_data_key()
        upload.head = b""
        self.upload = upload
        self._sha = hashlib.sha256()
        self._size = 0
        self._encryptor = StreamEncryptor(upload.data_key, upload.dataset_id)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        assert self.upload is not None
        self._size += len(raw_data)
        if self._size > self.max_bytes:
            self._discard()
            raise too_large(self.max_bytes)
        self._sha.update(raw_data)
        if len(self.upload.head) < HEAD_BYTES:
            self.upload.head += raw_data[: HEAD_BYTES - len(self.upload.head)]
        self.upload.write(self._encryptor.update(raw_data))

    def file_complete(self, file_size: int) -> EncryptedUpload | None:
        upload = self.upload
        if upload is None:
            return None
        upload.write(self._encryptor.finalize())
        upload.flush()
        upload.seek(0)
        upload.size = self._size
        upload.sha256 = self._sha.hexdigest()
        return upload

    def upload_interrupted(self) -> None:
        self._discard()

    def _discard(self) -> None:
        """Close (and so delete) a partial ciphertext temp file."""
        if self.upload is not None:
            self.upload.close()
            self.upload = None
