"""One exception handler: every error leaves as ``{"error": {"code", "message", ...}}``."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from csvault.core.errors import CsvaultError
from csvault.crypto.rows import RowDecryptError

logger = logging.getLogger(__name__)

_CODES = {
    status.HTTP_400_BAD_REQUEST: "invalid",
    status.HTTP_401_UNAUTHORIZED: "not_authenticated",
    status.HTTP_403_FORBIDDEN: "forbidden",
    status.HTTP_404_NOT_FOUND: "not_found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
    status.HTTP_406_NOT_ACCEPTABLE: "not_acceptable",
    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: "too_large",
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
    status.HTTP_429_TOO_MANY_REQUESTS: "throttled",
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    _audit(exc, context)
    if isinstance(exc, RowDecryptError):
        # Tampered or corrupted ciphertext: never data, always this error.
        logger.error("integrity check failed: %s", exc)
        return Response(
            error_body(
                "integrity_error",
                "Stored data failed its integrity check and was not returned "
                "(it was altered or corrupted). The operator has been told.",
            ),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if _pool_exhausted(exc):
        # Every pooled database connection stayed busy for the pool's timeout: overload.
        logger.warning("database pool exhausted: %s", exc)
        return Response(
            error_body("busy", "The service is busy. Try again in a few seconds."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, CsvaultError):
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        return Response({"error": exc.as_dict()}, status=exc.status_code, headers=headers)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unexpected: Django's handler500 answers (JSON, see urls)
    assert isinstance(exc, exceptions.APIException)
    code = _CODES.get(response.status_code, "error")
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body(code, "The request is invalid.", fields=exc.detail)
    else:
        detail = exc.detail
        response.data = error_body(code, str(detail))
    return response


def _pool_exhausted(exc: Exception) -> bool:
    """A database error caused by psycopg_pool's PoolTimeout (settings: CSVAULT_DATABASE_POOL)."""
    if not isinstance(exc, DatabaseError):
        return False
    cause = exc.__cause__
    return cause is not None and type(cause).__name__ == "PoolTimeout"


def _audit(exc: Exception, context: dict[str, Any]) -> None:
    """Denied access to another user's dataset, and refused uploads, are audit events."""
    from csvault.audit.models import AuditAction
    from csvault.audit.services import audit_record

    request = context.get("request")
    view = context.get("view")
    if getattr(exc, "foreign", False):
        audit_record(
            AuditAction.ACCESS_DENIED,
            request=request,
            dataset_id=getattr(exc, "dataset_id", None),
            reason="not_owner",
            method=getattr(request, "method", ""),
        )
    elif (
        isinstance(exc, CsvaultError)
        and getattr(view, "throttle_upload", False)
        and getattr(request, "method", "") == "POST"
    ):
        audit_record(AuditAction.UPLOAD_REFUSED, request=request, code=exc.code)


def json_404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def json_500(request: HttpRequest) -> JsonResponse:
    return JsonResponse(error_body("server_error", "Internal server error."), status=500)


def json_400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("bad_request", "Bad request."), status=400)
