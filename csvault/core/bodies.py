"""Request bodies: judged from the headers before anything reads them.

Three routes take a large body: ``POST /api/datasets/`` (multipart, the file in the field
``file``) and tus's ``POST /api/uploads/`` and ``PATCH /api/uploads/{id}``
(``application/offset+octet-stream``). They authenticate before the body is read: a
request without a valid token or session is answered 401 unread (a session's CSRF check
is what parses a multipart upload). Every other route takes a small form or JSON body,
or none: the login forms, logout, the admin's forms, the token API.

Django reads a body when something first touches ``request.POST``, and its CSRF check
does that for every POST that carries a CSRF cookie (any made-up value will do), before
any view or login throttle runs. A multipart file would then go through the encrypting
upload handler into the dataset store, and that handler's refusals are 500s outside the
API. So :class:`RequestBodyMiddleware`, ahead of everything that could read the body,
answers from the headers alone:

- 400 ``invalid_content_length``: a ``Content-Length`` that is not a non-negative integer
  (Django would read it as 0, django-prometheus fails on it with a 500);
- 400 ``invalid_multipart``: a multipart body without a valid boundary;
- 413 ``too_large``: a body over ``CSVAULT_FORM_MAX_BYTES`` to a route that takes no
  upload;
- 415 ``unsupported_media_type``: a multipart body to a tus route.

A form route may still get a multipart form (curl ``-F``, Django's test client), read
within that bound; its upload handlers are replaced by one that stores nothing and
ends the parse at the first file part, answered 400 ``file_not_accepted``.

A request with no ``Content-Length`` (chunked) passes: Django reads no body without one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from django.urls import Resolver404, resolve
from django.utils.http import parse_header_parameters

from csvault.core.exceptions import error_body

#: URL names (config/urls.py) and the methods on them that read an upload body.
UPLOAD_ROUTES: dict[str, frozenset[str]] = {
    "dataset-list": frozenset({"POST"}),
    "tus-uploads": frozenset({"POST"}),
    # tus clients that cannot send PATCH send POST with X-HTTP-Method-Override.
    "tus-upload": frozenset({"PATCH", "POST"}),
}
#: The one route whose body is a multipart upload.
MULTIPART_ROUTE = ("dataset-list", "POST")
# Set on a request whose multipart form carried a file (see NoFilesHandler).
_FILE_REFUSED = "_csvault_file_refused"


def declared_length(request: HttpRequest) -> int | None:
    """The body's ``Content-Length`` (0 without one), or None when it is not a number."""
    raw = request.META.get("CONTENT_LENGTH") or ""
    if not raw:
        return 0
    # HTTP allows digits only: no sign, no spaces, no other script's digits.
    if not (raw.isascii() and raw.isdigit()):
        return None
    return int(raw)


def _route(request: HttpRequest) -> tuple[str, str]:
    try:
        name = resolve(request.path_info).url_name or ""
    except Resolver404:
        name = ""
    return name, request.method or ""


def _has_valid_boundary(content_type: str) -> bool:
    # The rule Django's parser applies, here before a byte is read.
    boundary = parse_header_parameters(content_type)[1].get("boundary") or ""
    return MultiPartParser.boundary_re.fullmatch(boundary) is not None


def _refusal(status: int, code: str, message: str, **extra: object) -> JsonResponse:
    return JsonResponse(error_body(code, message, **extra), status=status)


class NoFilesHandler(FileUploadHandler):
    """The upload handler of every route but the multipart upload: it stores nothing, and
    the first file part ends the parse (the middleware answers 400 ``file_not_accepted``)."""

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        setattr(self.request, _FILE_REFUSED, True)
        raise MultiPartParserError("This endpoint takes no file.")

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        return None  # never reached: new_file raised

    def file_complete(self, file_size: int) -> None:
        return None


def body_refusal(request: HttpRequest) -> HttpResponse | None:
    """The answer to a body this request may not send, or None to let it through (with
    the upload handlers its route allows)."""
    length = declared_length(request)
    if length is None:
        return _refusal(
            400, "invalid_content_length", "The Content-Length header must be a whole number."
        )
    if length == 0:
        return None
    content_type = request.META.get("CONTENT_TYPE", "")
    multipart = content_type.strip().lower().startswith("multipart/")
    if multipart and not _has_valid_boundary(content_type):
        return _refusal(400, "invalid_multipart", "The multipart body has no valid boundary.")
    route = _route(request)
    name, method = route
    if method in UPLOAD_ROUTES.get(name, ()):
        if multipart and route != MULTIPART_ROUTE:
            return _refusal(
                415,
                "unsupported_media_type",
                "A tus chunk is sent as application/offset+octet-stream, not multipart.",
            )
        return None  # the upload's own limits apply, after authentication
    limit: int = settings.CSVAULT_FORM_MAX_BYTES
    if length > limit:
        return _refusal(
            413,
            "too_large",
            f"The request body is larger than the limit of {limit} bytes for this endpoint.",
            limit=limit,
        )
    if multipart:
        request.upload_handlers = [NoFilesHandler(request)]
    return None


class RequestBodyMiddleware:
    """Applies :func:`body_refusal` before any other middleware can read the body."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refused = body_refusal(request)
        if refused is not None:
            return refused
        response = self.get_response(request)
        if getattr(request, _FILE_REFUSED, False):
            # Whoever parsed the form (the CSRF check, a view, DRF) answered the parse
            # error in its own words; the client learns what was wrong.
            return _refusal(
                400,
                "file_not_accepted",
                "This endpoint takes no file; upload files to /api/datasets/ or /api/uploads/.",
            )
        return response
