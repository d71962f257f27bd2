"""Where dataset files live: a local folder or an S3 bucket (``STORAGE_URL``).

Files are ciphertext (csvault/crypto/stream.py) and move as streams both ways: an
upload is written to its final place as it arrives (:meth:`open_write`, a local
``.part`` file renamed into place, or an S3 multipart upload), and the worker reads it
back chunk by chunk (``open(name, "rb")``; on S3 a streamed GET, re-requested from the
current offset after a dropped connection). Neither side holds a whole file, in memory
or on a local disk.

A store that cannot be reached raises :class:`~csvault.core.errors.StorageUnavailable`
(an ``OSError``, so the worker's tasks retry it with backoff; an upload answers 503).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import IO, Any, Protocol

from django.core.files.storage import FileSystemStorage, storages


class WriteStream(Protocol):
    """A file being written to the store: nothing is visible under its name until
    :meth:`commit`; :meth:`abort` leaves nothing behind."""

    name: str

    def write(self, data: bytes) -> int: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class LocalWrite:
    """A new file in a local folder: written as ``<name>.part-<random>``, renamed on commit."""

    def __init__(self, path: str, name: str) -> None:
        self.name = name
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.part = f"{path}.part-{uuid.uuid4().hex[:12]}"
        fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.fh: IO[bytes] | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> int:
        assert self.fh is not None, "write after commit or abort"
        return self.fh.write(data)

    def commit(self) -> None:
        assert self.fh is not None, "commit after commit or abort"
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        self.fh = None
        os.replace(self.part, self.path)

    def abort(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.part)


class LocalStorage(FileSystemStorage):
    """Dataset files in a local folder (``STORAGE_URL=file:///path``), mode 0600."""

    def open_write(self, name: str) -> WriteStream:
        return LocalWrite(self.path(name), name)

    def ping(self) -> dict[str, Any]:
        probe = self.open_write(f"readyz/probe-{uuid.uuid4().hex}")
        probe.write(b"readyz")
        probe.commit()
        self.delete(probe.name)
        return {"backend": "local"}


def dataset_storage() -> Any:
    """The store of dataset files (``LocalStorage`` or ``csvault.core.s3storage.S3Store``)."""
    return storages["datasets"]
