"""Request context for logs: a request id (honoured from ``X-Request-ID`` or made), the
dataset from the URL, the user once authenticated; one access line per request."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.core.signals import request_finished
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

from csvault.core import logs

logger = logging.getLogger("csvault.request")

REQUEST_ID_HEADER = "X-Request-ID"
# A proxy's or client's id is kept when it is short and harmless in a log line.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def request_id_from(request: HttpRequest) -> str:
    """The incoming ``X-Request-ID`` if it is sane, else a new random one."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    if _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class UnfinishedUploadMiddleware:
    """After every request, whatever happened while its body was parsed (a connection
    reset mid-file raises out of Django's parser without telling the upload handlers),
    each upload handler that still has a file open in the store aborts it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            return self.get_response(request)
        finally:
            for handler in getattr(request, "_upload_handlers", None) or ():
                abort = getattr(handler, "abort_unfinished", None)
                if abort is not None:
                    abort()


class RequestContextMiddleware:
    """Sets the log context for the request and returns the request id in the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = request_id_from(request)
        request.request_id = rid  # type: ignore[attr-defined]
        # Not reset when the view returns: Django logs 4xx/5xx responses and a
        # streaming body is produced after that; request_finished clears it.
        logs.request_id.set(rid)
        logs.current_request.set(request)
        logs.dataset_id.set(None)
        logs.user_id.set(None)
        started = time.monotonic()
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = rid
        logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return response

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> None:
        # Every dataset endpoint names its dataset in the URL.
        if (value := view_kwargs.get("dataset_id")) is not None:
            logs.dataset_id.set(str(value))


@receiver(request_finished)
def _clear_request_context(**_: Any) -> None:
    logs.clear()


class ApiNoStoreMiddleware:
    """``Cache-Control: no-store`` on every API answer that sets no policy of its own:
    details, rows, profiles and event streams hold decrypted data that no browser or
    proxy cache may keep."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith("/api/") and not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response
