"""Dataset files in S3 or any S3-compatible store (``STORAGE_URL=s3://bucket/prefix``).

django-storages' ``S3Storage`` holds the configuration, the boto3 client and key
naming; this subclass streams both ways, since django-storages' own file object
downloads a whole object into a temporary file before the first read:

- :class:`S3Write` sends a file as a multipart upload of :data:`PART_BYTES` parts (one
  PUT when it is smaller), aborted on failure, so memory holds one part at most;
- :class:`S3Read` reads an object with one streamed GET, and on a dropped connection
  asks again for the rest (``Range: bytes=<offset>-``), a few times with backoff.

Every boto error becomes :class:`~csvault.core.errors.StorageUnavailable`, whose
message names neither the endpoint nor the bucket.
"""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Container, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.core.files.base import File
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from csvault.core.errors import StorageUnavailable

logger = logging.getLogger(__name__)

#: Multipart part size: S3's minimum is 5 MiB; 10,000 parts make files up to 80 GB.
PART_BYTES = 8 << 20
#: A read that loses its connection asks again from where it was, this many times.
READ_ATTEMPTS = 5
#: Errors no retry can mend: the read fails at once.
_PERMANENT = {"403", "AccessDenied", "416", "InvalidRange", "412", "PreconditionFailed"}
READ_BUFFER = 1 << 20
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def unavailable(what: str = "The file store") -> StorageUnavailable:
    return StorageUnavailable(f"{what} is unavailable; try again later.")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def translated(missing: str | None = None) -> Iterator[None]:
    """boto errors as StorageUnavailable; a missing object as FileNotFoundError(missing)."""
    try:
        yield
    except ClientError as exc:
        if missing is not None and _code(exc) in _MISSING:
            raise FileNotFoundError(missing) from None
        logger.warning("object store error: %s", exc)
        raise unavailable() from exc
    except BotoCoreError as exc:
        logger.warning("object store error: %s", exc)
        raise unavailable() from exc


def _upload_part(
    client: Any,
    bucket: str,
    key: str,
    upload_id: str | None,
    parts: list[dict[str, Any]],
    body: Any,
) -> str:
    """Send ``body`` as the next part of the multipart upload ``upload_id`` (started here
    when None), add it to ``parts``; returns the upload id."""
    target = {"Bucket": bucket, "Key": key}
    with translated():
        if upload_id is None:
            upload_id = str(client.create_multipart_upload(**target)["UploadId"])
        number = len(parts) + 1
        sent = client.upload_part(**target, UploadId=upload_id, PartNumber=number, Body=body)
    parts.append({"ETag": sent["ETag"], "PartNumber": number})
    return upload_id


class S3Write:
    """A new object, sent part by part; invisible until :meth:`commit`."""

    def __init__(self, client: Any, bucket: str, key: str, name: str) -> None:
        self.client, self.bucket, self.key, self.name = client, bucket, key, name
        # The part being filled; boto3 reads it as a file (no copy of the part).
        self.buffer = io.BytesIO()
        self.parts: list[dict[str, Any]] = []
        self.upload_id: str | None = None

    def write(self, data: bytes) -> int:
        self.buffer.write(data)
        if self.buffer.tell() >= PART_BYTES:
            self._send_part()
        return len(data)

    def _body(self) -> io.BytesIO:
        body, self.buffer = self.buffer, io.BytesIO()
        body.seek(0)
        return body

    def _send_part(self) -> None:
        self.upload_id = _upload_part(
            self.client, self.bucket, self.key, self.upload_id, self.parts, self._body()
        )

    def commit(self) -> None:
        target = {"Bucket": self.bucket, "Key": self.key}
        if self.upload_id is None:
            with translated():
                self.client.put_object(**target, Body=self._body())
        else:
            if self.buffer.tell():
                self._send_part()
            with translated():
                self.client.complete_multipart_upload(
                    **target, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
                )
        self.upload_id = None

    def abort(self) -> None:
        """Leave nothing: abort the multipart upload, and delete the key in case a commit
        whose answer was lost did complete (the key is new, nothing else is under it)."""
        self.buffer = io.BytesIO()
        try:
            if self.upload_id is not None:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
                )
            self.client.delete_object(Bucket=self.bucket, Key=self.key)
        except (BotoCoreError, ClientError) as exc:
            # Left for the bucket's lifecycle rule (docs/scaling.md) and the next delete.
            logger.warning("could not abort the upload of %s: %s", self.name, exc)
        self.upload_id = None


#: A resumable upload's bytes that do not yet fill a part wait in this object.
STAGED_SUFFIX = ".staged"


class S3Resumable:
    """An object written over many requests: a multipart upload whose parts are sent as
    they reach :data:`PART_BYTES`; what is short of a part at a checkpoint is staged in
    ``<key>.staged`` (as tusd's s3store does) and taken back by the next request.

    State: ``{"upload_id", "parts": [{"ETag", "PartNumber"}], "staged": bytes}``. Parts
    sent after the last checkpoint are overwritten by the next request's parts of the
    same numbers, so the kept state is always the truth.
    """

    def __init__(self, client: Any, bucket: str, key: str, state: dict[str, Any]) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.upload_id: str | None = state.get("upload_id")
        self.kept_upload_id = self.upload_id  # the one the kept state names
        self.parts: list[dict[str, Any]] = list(state.get("parts", []))
        self.buffer = bytearray()
        if state.get("staged"):
            with translated():
                staged = self.client.get_object(Bucket=bucket, Key=key + STAGED_SUFFIX)
                self.buffer += staged["Body"].read()
            if len(self.buffer) != state["staged"]:
                raise unavailable()  # the staged object is not the one the state names

    def append(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= PART_BYTES:
            self._send_part()

    def _send_part(self) -> None:
        self.upload_id = _upload_part(
            self.client, self.bucket, self.key, self.upload_id, self.parts, bytes(self.buffer)
        )
        self.buffer = bytearray()

    def checkpoint(self) -> dict[str, Any]:
        with translated():
            if self.buffer:
                self.client.put_object(
                    Bucket=self.bucket, Key=self.key + STAGED_SUFFIX, Body=bytes(self.buffer)
                )
        self.kept_upload_id = self.upload_id
        return {"upload_id": self.upload_id, "parts": self.parts, "staged": len(self.buffer)}

    def finish(self) -> None:
        target = {"Bucket": self.bucket, "Key": self.key}
        with translated():
            if self.upload_id is None:
                self.client.put_object(**target, Body=bytes(self.buffer))
            else:
                if self.buffer:
                    self._send_part()
                try:
                    self.client.complete_multipart_upload(
                        **target, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
                    )
                except ClientError as exc:
                    # Completed by a request that died before recording it: the object is there.
                    if _code(exc) != "NoSuchUpload":
                        raise
                    self.client.head_object(**target)
            self.client.delete_object(Bucket=self.bucket, Key=self.key + STAGED_SUFFIX)
        self.buffer = bytearray()
        self.kept_upload_id = self.upload_id

    def abort(self) -> None:
        self.buffer = bytearray()
        try:
            if self.upload_id is not None:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
                )
            self.client.delete_object(Bucket=self.bucket, Key=self.key + STAGED_SUFFIX)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("could not abort the resumable upload of %s: %s", self.key, exc)

    def release(self) -> None:
        self.buffer = bytearray()
        if self.upload_id is not None and self.upload_id != self.kept_upload_id:
            # Started by this request, which failed before a checkpoint recorded it.
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
                )
            except (BotoCoreError, ClientError) as exc:
                logger.warning("could not abort the upload of %s: %s", self.key, exc)
            self.upload_id = None


class S3Read(io.RawIOBase):
    """An object's bytes, from one streamed GET, resumed at the offset if it breaks."""

    def __init__(self, client: Any, bucket: str, key: str, size: int) -> None:
        super().__init__()
        self.client, self.bucket, self.key, self.size = client, bucket, key, size
        self.pos = 0
        self.body: Any = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.pos >= self.size:
            return 0
        last: Exception | None = None
        for attempt in range(READ_ATTEMPTS):
            try:
                if self.body is None:
                    answer = self.client.get_object(
                        Bucket=self.bucket, Key=self.key, Range=f"bytes={self.pos}-"
                    )
                    # A store or proxy that ignores Range would hand over the wrong bytes.
                    if self.pos and not str(answer.get("ContentRange", "")).startswith(
                        f"bytes {self.pos}-"
                    ):
                        answer["Body"].close()
                        raise EOFError(f"the store did not answer from byte {self.pos}")
                    self.body = answer["Body"]
                data = self.body.read(min(len(buffer), self.size - self.pos))
                if not data:
                    raise EOFError(f"the object ended at {self.pos} of {self.size} bytes")
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    raise FileNotFoundError(self.key) from None
                if _code(exc) in _PERMANENT:
                    logger.warning("object store read of %s refused: %s", self.key, exc)
                    raise unavailable() from exc
                last = exc
            except (BotoCoreError, OSError, EOFError) as exc:
                last = exc
            else:
                buffer[: len(data)] = data
                self.pos += len(data)
                return len(data)
            self._drop()
            time.sleep(min(0.25 * 2**attempt, 4.0))
        logger.warning("object store read of %s failed at byte %d: %s", self.key, self.pos, last)
        raise unavailable() from last

    def _drop(self) -> None:
        if self.body is not None:
            with suppress(Exception):  # a broken connection may fail to close
                self.body.close()
            self.body = None

    def close(self) -> None:
        self._drop()
        super().close()


class S3Store(S3Storage):
    """django-storages' S3 backend, streaming (see the module)."""

    #: Each read is a GET streamed over the network, with its own buffers in this process.
    cheap_rereads = False

    def _key(self, name: str) -> str:
        return str(self._normalize_name(clean_name(name)))

    @property
    def client(self) -> Any:
        return self.connection.meta.client

    def open_write(self, name: str) -> S3Write:
        return S3Write(self.client, self.bucket_name, self._key(name), name)

    def open_resumable(self, name: str, state: dict[str, Any]) -> S3Resumable:
        return S3Resumable(self.client, self.bucket_name, self._key(name), state)

    def _open(self, name: str, mode: str = "rb") -> File:
        if mode != "rb":
            raise ValueError(
                "dataset files are read with open(name, 'rb'), written with open_write()"
            )
        key = self._key(name)
        with translated(missing=name):
            size = int(self.client.head_object(Bucket=self.bucket_name, Key=key)["ContentLength"])
        raw = S3Read(self.client, self.bucket_name, key, size)
        return File(io.BufferedReader(raw, buffer_size=READ_BUFFER), name)

    def delete(self, name: str) -> None:
        """Delete the object and abort any unfinished multipart upload of its key."""
        key = self._key(name)
        with translated():
            listed = self.client.list_multipart_uploads(Bucket=self.bucket_name, Prefix=key)
            for upload in listed.get("Uploads", []):
                if upload["Key"] == key:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket_name, Key=key, UploadId=upload["UploadId"]
                    )
            self.client.delete_object(Bucket=self.bucket_name, Key=key)
            self.client.delete_object(Bucket=self.bucket_name, Key=key + STAGED_SUFFIX)

    def sweep_unfinished(self, older_than: float, keep: Container[str] = ()) -> int:
        """Abort multipart uploads under the prefix started ``older_than`` seconds ago or
        more (uploads whose web process died; the bucket's lifecycle rule does the same
        a day later), except those of the names in ``keep`` (resumable uploads still
        open); returns how many."""
        prefix = f"{self.location}/" if self.location else ""
        cutoff = time.time() - older_than
        aborted = 0
        with translated():
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket_name, Prefix=prefix
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Key"].removeprefix(prefix) in keep:
                        continue
                    if upload["Initiated"].timestamp() < cutoff:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket_name, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        aborted += 1
        return aborted

    def exists(self, name: str) -> bool:
        with translated():
            return bool(super().exists(name))

    def ping(self) -> dict[str, Any]:
        """The bucket is there and takes a write, a read and a delete."""
        try:
            self.client.head_bucket(Bucket=self.bucket_name)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise StorageUnavailable("the bucket named in STORAGE_URL does not exist") from exc
            if _code(exc) in {"403", "AccessDenied", "Forbidden"}:
                raise StorageUnavailable(
                    "access to the bucket named in STORAGE_URL is denied"
                ) from exc
            raise unavailable("The object store") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable("the object store is unreachable") from exc
        probe = self.open_write(f"readyz/probe-{uuid.uuid4().hex}")
        try:
            probe.write(b"readyz")
            probe.commit()
            with self.open(probe.name, "rb") as fh:
                if fh.read() != b"readyz":
                    raise StorageUnavailable("a probe object read back differs from the original")
        finally:
            probe.abort()  # deletes the probe object
        return {"backend": "s3"}
