"""The OpenAPI schema's shared parts (drf-spectacular, ``/api/schema/``).

- Every operation's error answers, each with the one ``Error`` component: the body
  that csvault/core/exceptions.py writes. The answers common to a kind of operation
  (authenticated, throttled, per dataset, with inputs, unsafe with a session) are
  derived from the view; those of one operation are in ``SPECIFIC``, keyed by method
  and path (tests/core/test_schema.py fails when a key matches no operation).
- HEAD and OPTIONS operations where a view implements them itself (the export's HEAD,
  the tus endpoints); drf-spectacular leaves those two methods out otherwise.
- ``header`` and ``response_header``, short forms for the views' ``@extend_schema``.

The views say what succeeds; this module says how each one fails, in one place.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.generators import EndpointEnumerator
from drf_spectacular.generators import SchemaGenerator as BaseSchemaGenerator
from drf_spectacular.openapi import AutoSchema as BaseAutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, IsAuthenticated
from rest_framework.views import APIView

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The body of every error answer (csvault/core/exceptions.py).",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {
                    "type": "string",
                    "description": "What went wrong, for programs: `not_found`, `throttled`, "
                    "`not_ready`, `too_large`... (docs/api.md lists them).",
                },
                "message": {
                    "type": "string",
                    "description": "A sentence a person can act on.",
                },
                "fields": {
                    "type": "object",
                    "additionalProperties": True,
                    "description": "With `invalid`: each bad input and its messages.",
                },
            },
            "required": ["code", "message"],
            # The fields a code names: `limit` (too_large), `status` (not_ready), `offset`
            # (offset_mismatch), `stored_bytes` and `quota_bytes` (storage_quota_exceeded).
            "additionalProperties": True,
        }
    },
    "required": ["error"],
}

RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": "Seconds to wait before trying again.",
    }
}

# --- answers common to a kind of operation ------------------------------------------
INVALID = "Invalid input: `invalid`, with `fields` naming each bad one."
NOT_AUTHENTICATED = "No or bad credentials, or an inactive user: `not_authenticated`."
CSRF = "A session-authenticated request without its CSRF token (`X-CSRFToken`): `forbidden`."
NOT_FOUND = "No such dataset, or another user's (never 403): `not_found`."
UNSUPPORTED = "A body in a type this operation does not read: `unsupported_media_type`."
THROTTLED = "Over the rate of this kind of request: `throttled`, with `Retry-After`."
BUSY = (
    "Overloaded: every pooled database connection stayed busy for "
    "`CSVAULT_DATABASE_POOL_TIMEOUT`: `busy`, with `Retry-After`."
)

# --- answers of one operation or protocol ---------------------------------------------
NOT_READY = "The dataset is not completed yet: `not_ready`, with its `status`."
INTEGRITY = "Stored data failed its integrity check and was not returned: `integrity_error`."
STORAGE = "The file store is unavailable: `storage_unavailable`; try again later."
LENGTH_REQUIRED = (
    "A body without `Content-Length` (chunked bodies are not read): `length_required`."
)
TOO_MANY_ACTIVE = (
    "Throttled (`throttled`), or too many uploads not yet final "
    "(`too_many_active_datasets`); `Retry-After` says when to try again."
)
TUS_VERSION = "`Tus-Resumable` missing or not `1.0.0`: `tus_version`, with `Tus-Version: 1.0.0`."
TUS_NOT_FOUND = "No such upload, a deleted one or another user's: `not_found`."
TUS_CHECKSUM = "`Upload-Checksum` does not match the chunk: `checksum_mismatch`; it is dropped."
TUS_UNSUPPORTED = (
    "A chunk whose `Content-Type` is not `application/offset+octet-stream` "
    "(`tus_content_type`), or a file whose first bytes are not CSV text (`not_csv`; the "
    "upload is deleted)."
)

DATASET = "/api/datasets/{dataset_id}/"
UPLOAD = "/api/uploads/{dataset_id}"

#: (method, path) -> {status: description}: the answers that the rules below do not
#: derive from the view, or that say more for this operation than theirs.
SPECIFIC: dict[tuple[str, str], dict[int, str]] = {
    ("POST", "/api/auth/token/"): {
        400: "A wrong, missing or inactive user name or password: `invalid`, with `fields`.",
    },
    ("GET", "/api/datasets/"): {
        400: "A `status` that is not a dataset status: `invalid`, with `fields`.",
        404: "A `cursor` that is not one of this list's links: `not_found`.",
    },
    ("POST", "/api/datasets/"): {
        400: "Invalid input (`invalid`, with `fields`), or an upload refused for its content "
        "or options: `empty_file`, `one_file_expected`, `invalid_delimiter`, "
        "`invalid_encoding`, `invalid_idempotency_key`.",
        403: "Over the storage quota: `storage_quota_exceeded`, with `stored_bytes` and "
        "`quota_bytes`; or a session-authenticated upload without its CSRF token (`forbidden`).",
        411: LENGTH_REQUIRED,
        413: "Larger than `CSVAULT_MAX_UPLOAD_BYTES`: `too_large`, with `limit`.",
        415: "Not `multipart/form-data` (`unsupported_media_type`), or a file that is not CSV "
        "text (`not_csv`: binary magic numbers, or NUL bytes outside UTF-16/UTF-32 text).",
        429: TOO_MANY_ACTIVE,
        503: STORAGE,
    },
    ("GET", DATASET + "rows/"): {409: NOT_READY, 500: INTEGRITY},
    ("GET", DATASET + "profile/"): {409: NOT_READY, 500: INTEGRITY},
    ("GET", DATASET + "export/"): {
        400: "A `format` other than `csv` or `jsonl`, or a `formula_safe` other than "
        "`1`, `0`, `true`, `false`: `invalid`.",
        409: NOT_READY,
    },
    ("HEAD", DATASET + "export/"): {400: "As for GET.", 409: NOT_READY},
    ("POST", "/api/uploads/"): {
        400: "A bad `Upload-Length`, `Upload-Metadata` or `Upload-Checksum` (`tus_header`, "
        "`tus_checksum_algorithm`), a bad option in the metadata (`invalid_delimiter`, "
        "`invalid_encoding`, `invalid`), `Upload-Length: 0` (`empty_file`), or a first chunk "
        "longer than `Upload-Length` (`past_upload_length`).",
        411: LENGTH_REQUIRED,
        412: TUS_VERSION,
        413: "`Upload-Length` over `CSVAULT_MAX_UPLOAD_BYTES` (`too_large`, with `limit`) or "
        "over the storage quota (`storage_quota_exceeded`).",
        415: TUS_UNSUPPORTED,
        429: TOO_MANY_ACTIVE,
        460: TUS_CHECKSUM,
        503: STORAGE,
    },
    ("HEAD", UPLOAD): {404: TUS_NOT_FOUND, 412: TUS_VERSION},
    ("PATCH", UPLOAD): {
        400: "A bad `Upload-Offset` or `Upload-Checksum` (`tus_header`, "
        "`tus_checksum_algorithm`), or a chunk past `Upload-Length` (`past_upload_length`).",
        404: TUS_NOT_FOUND,
        409: "`Upload-Offset` is not the upload's offset (`offset_mismatch`, with `offset`), "
        "another chunk of this upload is being appended, or the upload is complete.",
        411: LENGTH_REQUIRED,
        412: TUS_VERSION,
        415: TUS_UNSUPPORTED,
        460: TUS_CHECKSUM,
        503: STORAGE,
    },
    ("DELETE", UPLOAD): {404: TUS_NOT_FOUND, 412: TUS_VERSION},
}


def header(name: str, description: str = "", *, kind: Any = str, **options: Any) -> Any:
    """A request header, for ``@extend_schema(parameters=...)``."""
    return OpenApiParameter(name, kind, OpenApiParameter.HEADER, description=description, **options)


def response_header(
    name: str,
    description: str = "",
    *,
    kind: Any = str,
    on: bool | list[int] = True,
    **options: Any,
) -> Any:
    """A header of the answers with the statuses ``on`` (all by default)."""
    return OpenApiParameter(
        name, kind, OpenApiParameter.HEADER, description=description, response=on, **options
    )


class AutoSchema(BaseAutoSchema):
    """drf-spectacular's AutoSchema plus the error answers of each operation."""

    method_mapping = {**BaseAutoSchema.method_mapping, "head": "head", "options": "options"}

    def get_operation(
        self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        error = ResolvedComponent(
            name="Error", type=ResolvedComponent.SCHEMA, object="Error", schema=ERROR_SCHEMA
        )
        registry.register_on_missing(error)
        responses = operation["responses"]
        for status, description in sorted(self.error_answers(operation).items()):
            answer: dict[str, Any] = {"description": description}
            if status in (429, 503):
                answer["headers"] = RETRY_AFTER
            if self.method != "HEAD":  # a HEAD answer has no body, errors included
                answer["content"] = {"application/json": {"schema": error.ref}}
            responses.setdefault(str(status), answer)
        return operation

    def error_answers(self, operation: dict[str, Any]) -> dict[int, str]:
        """``{status: description}`` of this operation's error answers."""
        view = self.view
        parameters = operation.get("parameters", [])
        answers: dict[int, str] = {}
        if any(p["in"] == "query" for p in parameters) or "requestBody" in operation:
            answers[400] = INVALID
        authenticated = any(isinstance(p, IsAuthenticated) for p in view.get_permissions())
        if authenticated:
            answers[401] = NOT_AUTHENTICATED
            if self.method not in SAFE_METHODS and any(
                isinstance(a, SessionAuthentication) for a in view.get_authenticators()
            ):
                answers[403] = CSRF
        if any(p["in"] == "path" for p in parameters):
            answers[404] = NOT_FOUND
        if "requestBody" in operation:
            answers[415] = UNSUPPORTED
        if view.get_throttles():
            answers[429] = THROTTLED
        if authenticated:
            answers[503] = BUSY
        for status, description in SPECIFIC.get((self.method, self.path), {}).items():
            answers[status] = f"{description} {BUSY}" if status == 503 else description
        return answers


class _DatasetErrorName(OpenApiSerializerExtension):
    """A dataset's ``error`` object (why its scan or ingest failed) is the component
    ``DatasetError``: ``Error`` is the body of the error answers."""

    target_class = "csvault.datasets.serializers.ErrorSerializer"  # named: core imports no app

    def get_name(self, auto_schema: Any, direction: Any) -> str:
        return "DatasetError"


class _Endpoints(EndpointEnumerator):
    """drf-spectacular's endpoints, plus HEAD and OPTIONS where a csvault view class
    implements them itself (not the defaults of DRF's APIView and Django's View)."""

    def get_allowed_methods(self, callback: Any) -> list[str]:
        methods: list[str] = super().get_allowed_methods(callback)
        own = [k for k in callback.cls.__mro__ if k not in APIView.__mro__]
        for method in ("HEAD", "OPTIONS"):
            if any(method.lower() in vars(k) for k in own):
                methods.append(method)
        return methods


class SchemaGenerator(BaseSchemaGenerator):
    endpoint_inspector_cls = _Endpoints
