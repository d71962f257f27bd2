"""The tus 1.0 protocol at ``/api/uploads/`` (core, creation, creation-with-upload,
termination, checksum, expiration), over csvault/datasets/resumable.py.

An upload's id is its dataset's id. Authentication, permissions and throttles are the
API's (token, or session + CSRF header); creations count against the ``upload``
throttle, chunks against ``chunk``. Errors carry csvault's JSON error body.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.http import http_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from csvault.audit.models import AuditAction
from csvault.audit.services import audit_record
from csvault.core.errors import CsvaultError, QuotaExceeded, UploadRejected
from csvault.core.schema import header, response_header
from csvault.datasets.models import Dataset
from csvault.datasets.resumable import (
    CHECKSUMS,
    Checksum,
    upload_append,
    upload_complete,
    upload_create,
    upload_get,
)
from csvault.datasets.services import dataset_delete

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
CHUNK_TYPE = "application/offset+octet-stream"
OVERRIDABLE = {"PATCH", "DELETE", "HEAD"}


class TusError(CsvaultError):
    default_code = "tus_protocol"


def _http_date(value: Any) -> str:
    return http_date(value.timestamp())


@extend_schema(
    methods=["POST", "HEAD", "PATCH", "DELETE"],
    parameters=[
        header("Tus-Resumable", "Any other, or none, is 412.", enum=[TUS_VERSION], required=True),
        response_header("Tus-Resumable", TUS_VERSION),
    ],
)  # the error answers of each operation: csvault/core/schema.py
class _TusView(APIView):
    """Shared: method override, version check, Tus-Resumable on every answer."""

    throttle_upload = True
    throttle_chunks = True

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        override = request.headers.get("X-HTTP-Method-Override", "").upper()
        if request.method == "POST" and override in OVERRIDABLE:
            request.method = override
        return super().initialize_request(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.method != "OPTIONS":
            version = request.headers.get("Tus-Resumable", "")
            if version != TUS_VERSION:
                raise TusError(
                    f"Tus-Resumable {version or '(missing)'} is not supported; use {TUS_VERSION}.",
                    code="tus_version",
                    status_code=status.HTTP_412_PRECONDITION_FAILED,
                )

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        if request.method == "OPTIONS":
            response["Tus-Version"] = TUS_VERSION
            response["Tus-Extension"] = EXTENSIONS
            response["Tus-Max-Size"] = str(settings.CSVAULT_MAX_UPLOAD_BYTES)
            response["Tus-Checksum-Algorithm"] = ",".join(CHECKSUMS)
            if response.status_code == status.HTTP_200_OK:
                response.status_code = status.HTTP_204_NO_CONTENT
                response.content = b""
        else:
            response["Tus-Resumable"] = TUS_VERSION
            if response.status_code == status.HTTP_412_PRECONDITION_FAILED:
                response["Tus-Version"] = TUS_VERSION
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(
        summary="The server's tus capabilities",
        description="tus discovery: version, extensions, size limit, checksum algorithms.",
        request=None,
        parameters=[
            response_header("Tus-Version", TUS_VERSION),
            response_header("Tus-Extension", EXTENSIONS),
            response_header("Tus-Max-Size", "CSVAULT_MAX_UPLOAD_BYTES", kind=int),
            response_header("Tus-Checksum-Algorithm", ",".join(CHECKSUMS)),
        ],
        responses={204: OpenApiResponse(description="No body; the capabilities are headers.")},
    )
    def options(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return Response(status=status.HTTP_204_NO_CONTENT)


def _length_header(request: Request, name: str) -> int:
    raw = request.headers.get(name, "")
    if not (raw.isascii() and raw.isdigit()):
        raise TusError(f"The {name} header must be a non-negative integer.", code="tus_header")
    return int(raw)


def _metadata(request: Request) -> dict[str, str]:
    """Upload-Metadata: ``key base64value,key2 base64value2``."""
    found: dict[str, str] = {}
    for pair in filter(
        None, (p.strip() for p in request.headers.get("Upload-Metadata", "").split(","))
    ):
        key, _, value = pair.partition(" ")
        try:
            found[key] = base64.b64decode(value, validate=True).decode("utf-8") if value else ""
        except (binascii.Error, UnicodeDecodeError):
            raise TusError(
                f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text.", code="tus_header"
            ) from None
    return found


def _boolean(value: str, field: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise UploadRejected(f"{field} must be true or false.", code="invalid")


def _checksum(request: Request) -> Checksum | None:
    raw = request.headers.get("Upload-Checksum", "")
    if not raw:
        return None
    algorithm, _, value = raw.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise TusError(
            f"Checksum algorithm {algorithm!r} is not supported ({', '.join(CHECKSUMS)}).",
            code="tus_checksum_algorithm",
        )
    try:
        return Checksum(algorithm, base64.b64decode(value, validate=True))
    except binascii.Error:
        raise TusError("The Upload-Checksum value is not base64.", code="tus_header") from None


def _chunk(request: Request) -> int:
    """The chunk's length (its Content-Length), once its Content-Type is right."""
    if request.headers.get("Content-Type", "").split(";")[0].strip() != CHUNK_TYPE:
        raise TusError(
            f"A chunk's Content-Type must be {CHUNK_TYPE}.",
            code="tus_content_type",
            status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        )
    length = request.META.get("CONTENT_LENGTH") or ""
    if not length.isdigit():
        raise UploadRejected(
            "Send the chunk with a Content-Length header.",
            code="length_required",
            status_code=status.HTTP_411_LENGTH_REQUIRED,
        )
    return int(length)


def _offset_headers(response: Response, dataset: Dataset) -> Response:
    response["Upload-Offset"] = str(dataset.bytes_received)
    response["Upload-Length"] = str(dataset.size)
    resumable = getattr(dataset, "resumable", None) if dataset.status == "uploading" else None
    if resumable is not None:
        response["Upload-Expires"] = _http_date(resumable.expires_at)
    return response


class TusUploadsApi(_TusView):
    """``POST /api/uploads/``: create an upload (and send its first chunk with it)."""

    @extend_schema(
        summary="Create a resumable upload (tus 1.0), optionally with its first chunk",
        parameters=[
            header("Upload-Length", "Bytes, at most Tus-Max-Size.", kind=int, required=True),
            header(
                "Upload-Metadata",
                "`key base64(value)` pairs, comma-separated: `filename`, and optionally `name`, "
                "`delimiter`, `encoding`, `has_header` (true/false), as in a multipart upload.",
            ),
            header("Upload-Checksum", "With a first chunk: `sha1|sha256|md5 base64(digest)`."),
            response_header("Location", "…/api/uploads/{id}; the id is the dataset's.", on=[201]),
            response_header("Upload-Offset", "The first chunk's length, or 0.", kind=int, on=[201]),
            response_header("Upload-Expires", "When it is deleted unless finished.", on=[201]),
        ],
        request={CHUNK_TYPE: OpenApiTypes.BINARY},
        responses={201: OpenApiResponse(description="The dataset is `uploading` until its end.")},
    )
    def post(self, request: Request) -> Response:
        length = _length_header(request, "Upload-Length")
        meta = _metadata(request)
        with_body = request.META.get("CONTENT_LENGTH", "0") not in ("", "0")
        body_length = _chunk(request) if with_body else 0
        checksum = _checksum(request) if with_body else None
        try:
            dataset = upload_create(
                owner=request.user,  # type: ignore[arg-type]
                length=length,
                filename=meta.get("filename", "") or "upload.csv",
                name=meta.get("name", ""),
                delimiter=meta.get("delimiter", ""),
                encoding=meta.get("encoding", ""),
                has_header=_boolean(meta.get("has_header", "true"), "has_header"),
            )
        except QuotaExceeded as exc:
            if exc.code == "storage_quota_exceeded":
                exc.status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE  # tus: too large
            raise
        audit_record(
            AuditAction.UPLOAD, request=request, dataset_id=dataset.id, size=length, tus=True
        )
        if with_body:
            dataset = upload_append(
                owner=request.user,  # type: ignore[arg-type]
                dataset_id=dataset.id,
                offset=0,
                body=request._request,
                body_length=body_length,
                checksum=checksum,
            )
        response = Response(status=status.HTTP_201_CREATED)
        response["Location"] = request.build_absolute_uri(f"/api/uploads/{dataset.id}")
        return _offset_headers(response, _fresh(dataset.id))


def _fresh(dataset_id: uuid.UUID) -> Dataset:
    return Dataset.objects.select_related("resumable").get(id=dataset_id)


@extend_schema(methods=["OPTIONS"], exclude=True)  # discovery is OPTIONS /api/uploads/
class TusUploadApi(_TusView):
    """``HEAD``, ``PATCH``, ``DELETE /api/uploads/{id}``."""

    def _upload(self, request: Request, dataset_id: uuid.UUID) -> Dataset:
        try:
            dataset = upload_get(owner=request.user, dataset_id=dataset_id)  # type: ignore[arg-type]
        except Dataset.DoesNotExist:
            done = Dataset.objects.filter(
                id=dataset_id,
                owner=request.user,
                deleted_at__isnull=True,  # type: ignore[misc]
            ).first()
            if done is None:
                raise TusError(
                    "No such upload.", code="not_found", status_code=status.HTTP_404_NOT_FOUND
                ) from None
            return done  # complete: its offset is its length
        if dataset.bytes_received == dataset.size:
            dataset = upload_complete(dataset_id=dataset.id)  # a request died finishing it
        return dataset

    @extend_schema(
        summary="Where a resumable upload stands",
        description="A finished upload answers with its offset at its length.",
        parameters=[
            response_header("Upload-Offset", "The next chunk starts here.", kind=int, on=[200]),
            response_header("Upload-Length", kind=int, on=[200]),
            response_header("Upload-Expires", "While unfinished: when it is deleted.", on=[200]),
        ],
        responses={200: OpenApiResponse(description="No body.")},
    )
    def head(self, request: Request, dataset_id: uuid.UUID) -> Response:
        return _offset_headers(
            Response(status=status.HTTP_200_OK), self._upload(request, dataset_id)
        )

    @extend_schema(
        summary="Append a chunk to a resumable upload",
        description="A client that cannot send PATCH (or HEAD, DELETE) may POST with "
        "`X-HTTP-Method-Override`. After the last byte the dataset is `pending`.",
        parameters=[
            header("Upload-Offset", "The upload's offset (HEAD).", kind=int, required=True),
            header("Upload-Checksum", "`sha1|sha256|md5 base64(digest)` of this chunk."),
            response_header("Upload-Offset", "The new offset.", kind=int, on=[204]),
            response_header("Upload-Expires", on=[204]),
        ],
        request={CHUNK_TYPE: OpenApiTypes.BINARY},
        responses={204: OpenApiResponse(description="Appended.")},
    )
    def patch(self, request: Request, dataset_id: uuid.UUID) -> Response:
        dataset = self._upload(request, dataset_id)
        offset = _length_header(request, "Upload-Offset")
        body_length = _chunk(request)
        if dataset.status != "uploading":
            if offset == dataset.size and body_length == 0:
                return _offset_headers(Response(status=status.HTTP_204_NO_CONTENT), dataset)
            raise TusError(
                "The upload is complete.",
                code="offset_mismatch",
                status_code=status.HTTP_409_CONFLICT,
            )
        try:
            dataset = upload_append(
                owner=request.user,  # type: ignore[arg-type]
                dataset_id=dataset_id,
                offset=offset,
                body=request._request,
                body_length=body_length,
                checksum=_checksum(request),
            )
        except Dataset.DoesNotExist:
            raise TusError(
                "No such upload.", code="not_found", status_code=status.HTTP_404_NOT_FOUND
            ) from None
        return _offset_headers(Response(status=status.HTTP_204_NO_CONTENT), _fresh(dataset.id))

    @extend_schema(
        summary="Delete a resumable upload, finished or not (tus termination)",
        responses={204: OpenApiResponse(description="Deleted; the data key is destroyed.")},
    )
    def delete(self, request: Request, dataset_id: uuid.UUID) -> Response:
        dataset = self._upload(request, dataset_id)
        dataset_delete(dataset=dataset)
        audit_record(AuditAction.DELETE, request=request, dataset_id=dataset.id)
        return Response(status=status.HTTP_204_NO_CONTENT)
