"""Where dataset files live: a local folder or an S3 bucket (``STORAGE_URL``).

Files are ciphertext (csvault/crypto/stream.py) and move as streams both ways: an
upload is written to its final place as it arrives (:meth:`open_write`, a local
``.part`` file renamed into place, or an S3 multipart upload), and the worker reads it
back chunk by chunk (``open(name, "rb")``; on S3 a streamed GET, re-requested from the
current offset after a dropped connection). Neither side holds a whole file, in memory
or on a local disk.

A store that cannot be reached, or a local disk that fails a write (full, read-only),
raises :class:`~csvault.core.errors.StorageUnavailable` (an ``OSError``, so the worker's
tasks retry it with backoff; an upload answers 503).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import time
import uuid
from collections.abc import Container, Iterator
from typing import IO, Any, Protocol

from django.core.files.storage import FileSystemStorage, storages

from csvault.core.errors import StorageUnavailable

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _local_errors() -> Iterator[None]:
    """A failing local disk as StorageUnavailable (its path stays in the log only)."""
    try:
        yield
    except FileNotFoundError:
        raise
    except StorageUnavailable:
        raise
    except OSError as exc:
        logger.warning("local file store error: %s", exc)
        raise StorageUnavailable("The file store is unavailable; try again later.") from exc


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
        self.part = f"{path}.part-{uuid.uuid4().hex[:12]}"
        with _local_errors():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.fh: IO[bytes] | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> int:
        assert self.fh is not None, "write after commit or abort"
        with _local_errors():
            return self.fh.write(data)

    def commit(self) -> None:
        assert self.fh is not None, "commit after commit or abort"
        with _local_errors():
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            self.fh = None
            os.replace(self.part, self.path)
            # The rename itself is durable only once its directory is.
            _fsync_folder(os.path.dirname(self.path))

    def abort(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.part)


class ResumableWrite(Protocol):
    """A file written over many requests, possibly on different hosts (resumable uploads).

    :meth:`append` adds bytes; :meth:`checkpoint` makes everything appended durable and
    returns the state to keep (JSON) and pass to ``open_resumable`` next time, which
    drops whatever was appended after that state; :meth:`finish` makes the file appear
    under its name; :meth:`abort` leaves nothing.
    """

    def append(self, data: bytes) -> None: ...

    def checkpoint(self) -> dict[str, Any]: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...

    def release(self) -> None:
        """Done with this handle (whatever happened); the checkpointed state stays."""


class LocalResumable:
    """``<name>.upload``, appended to, truncated back to the last checkpoint on opening,
    renamed to ``<name>`` when finished."""

    def __init__(self, path: str, state: dict[str, Any]) -> None:
        self.path = path
        self.upload = path + UPLOAD_SUFFIX
        # Finished by a request that died before recording it: finishing again is a no-op.
        self.finished = bool(state) and not os.path.exists(self.upload) and os.path.exists(path)
        self.fh: IO[bytes]
        if self.finished:
            self.fh = open(os.devnull, "r+b")  # noqa: SIM115 - closed by release
            return
        with _local_errors():
            if not state:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd = os.open(self.upload, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
                self.fh = os.fdopen(fd, "r+b")
            else:
                self.fh = open(self.upload, "r+b")  # noqa: SIM115 - closed by finish/abort
                self.fh.truncate(int(state["size"]))
            self.fh.seek(0, os.SEEK_END)

    def append(self, data: bytes) -> None:
        with _local_errors():
            self.fh.write(data)

    def checkpoint(self) -> dict[str, Any]:
        with _local_errors():
            self.fh.flush()
            os.fsync(self.fh.fileno())
            return {"size": self.fh.tell()}

    def finish(self) -> None:
        if self.finished:
            return
        self.checkpoint()
        self.fh.close()
        with _local_errors():
            os.replace(self.upload, self.path)
            _fsync_folder(os.path.dirname(self.path))

    def abort(self) -> None:
        self.fh.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.upload)

    def release(self) -> None:
        self.fh.close()


def _fsync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Suffix of a resumable upload's file until it is finished.
UPLOAD_SUFFIX = ".upload"


class LocalStorage(FileSystemStorage):
    """Dataset files in a local folder (``STORAGE_URL=file:///path``), mode 0600."""

    #: Reading a file once more, or twice at once, costs copies from the page cache only.
    cheap_rereads = True

    def open_write(self, name: str) -> WriteStream:
        return LocalWrite(self.path(name), name)

    def open_resumable(self, name: str, state: dict[str, Any]) -> ResumableWrite:
        return LocalResumable(self.path(name), state)

    def delete(self, name: str) -> None:
        """Delete the file and any unfinished write of its name (``<name>.part-*``,
        ``<name>.upload``)."""
        path = self.path(name)
        with _local_errors():
            for part in [*glob.glob(glob.escape(path) + ".part-*"), path + UPLOAD_SUFFIX]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part)
            super().delete(name)

    def sweep_unfinished(self, older_than: float, keep: Container[str] = ()) -> int:
        """Remove ``.part-*`` files untouched for ``older_than`` seconds (writes whose web
        process died); returns how many. A live upload writes to its file all along;
        resumable uploads (``.upload`` files, ``keep``) are not touched."""
        cutoff = time.time() - older_than
        removed = 0
        with _local_errors():
            pattern = os.path.join(glob.escape(str(self.location)), "**", "*.part-*")
            for part in glob.glob(pattern, recursive=True):
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(part).st_mtime < cutoff:
                        os.unlink(part)
                        removed += 1
        return removed

    def ping(self) -> dict[str, Any]:
        probe = self.open_write(f"readyz/probe-{uuid.uuid4().hex}")
        try:
            probe.write(b"readyz")
            probe.commit()
        finally:
            probe.abort()
            self.delete(probe.name)
        return {"backend": "local"}


def dataset_storage() -> Any:
    """The store of dataset files (``LocalStorage`` or ``csvault.core.s3storage.S3Store``)."""
    return storages["datasets"]
