"""The hot reads answered before Django: a dataset's progress, its detail, a page of its
rows and the first page of the owner's list, for a client that sends its token.

A poll of a running ingest is the commonest request there is, and the answer is
usually in the cache already (cache.py). Through Django it costs the middleware stack,
DRF's authentication and throttle and three Redis round trips; here it costs one
round trip, a Lua script that, inside Redis:

1. reads the token's user id (``csvault.core.authentication.user_id_key``: filled by a
   request that checked the token in the database, tombstoned on logout or when the
   user is saved; when it has expired, the token is checked in the database here, as
   DRF would, and the script runs again),
2. counts the request in the user's ``read`` throttle window (the same counter
   ``csvault.core.throttling`` uses),
3. reads the cached value under the user's own key (cache.py: keys carry the owner,
   so only the owner's cached values can be found) and the dataset's generation.

A page of rows takes the cached detail as its gate, as Django's path does
(``selectors.row_page_from_detail``: completed, the sealed header opens), then reads
its blocks in one query that checks the owner again (a request's database
connection is taken and given back as Django does it, through ``request_started``
and ``request_finished``).

A value of the current generation is rendered as DRF renders it, with the headers
Django's middleware gave the same kind of answer (learned from the first answer
Django gave, per kind and scheme), a request id, an access log line and
django-prometheus's metrics. Anything else goes to Django unchanged: no token, a
cookie, a query string, an ``Accept`` that is not plain JSON, a body, a host Django
would refuse, plain HTTP where HTTPS is required, an unknown or revoked token, a
throttled caller (Django answers the 429), a miss, Redis down or not the cache, rows
that are not ready, a query string other than ``after``/``limit`` in range, any error
(Django answers it again, as it would have). A
request counted here and handed on carries its count (``throttling.COUNTED``), so
it is counted once. Django's answers are the reference: the tests compare both
paths byte for byte.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import request_finished, request_started
from django.db import connection
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from csvault.core import logs
from csvault.core.authentication import active_token_user, remember_token, user_id_key
from csvault.core.dbwait import without_yielding
from csvault.core.metrics import record_served_request
from csvault.core.middleware import REQUEST_ID_HEADER, request_id_from
from csvault.core.pagination import NewestFirstCursorPagination
from csvault.core.throttling import COUNTED, user_counter_key
from csvault.datasets.cache import (
    entry_key,
    fresh_value,
    generation_key,
    list_key,
    list_version_key,
)
from csvault.datasets.selectors import open_payload, row_page_from_detail
from csvault.datasets.serializers import ROWS_DEFAULT_LIMIT, ROWS_MAX_LIMIT, row_page_data

logger = logging.getLogger("csvault.request")

_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # Django's <uuid:>
_PATH = re.compile(rf"/api/datasets/(?:({_UUID})/(progress/|rows/)?)?\Z")
_KINDS = {None: "detail", "progress/": "progress", "rows/": "rows"}
_VIEWS = {
    "list": "dataset-list",
    "detail": "dataset-detail",
    "progress": "dataset-progress",
    "rows": "dataset-rows",
}
_ROWS_QUERY = re.compile(r"(after|limit)=([0-9]{1,18})\Z")
_PLAIN_JSON = frozenset({"", "*/*", "application/json"})
# Placeholders the script replaces with the user id and the list version.
_UID, _VERSION = "\x00", "\x01"

_SCRIPT = """
local uid = redis.call('GET', KEYS[1])
if not uid then return {0} end
if uid == '0' then return {-1} end
local count, ttl = 0, 0
local window = tonumber(ARGV[1])
if window > 0 then
  local counter = ARGV[2] .. uid .. ARGV[3]
  count = redis.call('INCR', counter)
  redis.call('EXPIRE', counter, window, 'NX')
  ttl = redis.call('TTL', counter)
end
local version = ''
if ARGV[7] ~= '' then
  version = redis.call('GET', ARGV[7] .. uid .. ARGV[8]) or '0'
end
local value = redis.call('GET', ARGV[4] .. uid .. ARGV[5] .. version .. ARGV[6])
local generation = false
if ARGV[9] ~= '' then generation = redis.call('GET', ARGV[9]) end
return {1, uid, count, ttl, value, generation}
"""


class HotReads:
    """WSGI middleware in front of Django (config/wsgi.py); see the module's docstring."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        # (kind, https) -> the headers of Django's 200 for that kind, request id and
        # length left out.
        self._headers: dict[tuple[str, bool], list[tuple[str, str]]] = {}
        self._scripts: dict[int, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        match = _eligible(environ)
        if match is None:
            return self.app(environ, start_response)
        started = time.perf_counter()
        kind = "list" if match.group(1) is None else _KINDS[match.group(2)]
        rows_query = _rows_query(environ.get("QUERY_STRING", "")) if kind == "rows" else None
        if environ.get("QUERY_STRING") and rows_query is None:
            return self.app(environ, start_response)
        request = WSGIRequest(environ)
        try:
            request.get_host()  # Django answers 400 for a host it does not serve
        except DisallowedHost:
            return self.app(environ, start_response)
        secure = request.is_secure()
        if settings.SECURE_SSL_REDIRECT and not secure:
            return self.app(environ, start_response)
        headers = self._headers.get((kind, secure))
        found = None
        try:
            found = self._lookup(environ, request, kind, match.group(1), rows_query)
        except Exception:  # Redis down or slow: Django's path knows how to degrade
            logger.debug("hot read lookup failed; Django answers", exc_info=True)
        if found is None or headers is None:
            return self.app(environ, self._learning(kind, secure, start_response))
        body, user_id = found
        rid = request_id_from(request)
        start_response(
            "200 OK",
            [*headers, ("Content-Length", str(len(body))), (REQUEST_ID_HEADER, rid)],
        )
        seconds = time.perf_counter() - started
        _log(request, rid, user_id, match.group(1), seconds)
        record_served_request(
            view=_VIEWS[kind],
            method="GET",
            status=200,
            secure=secure,
            body_bytes=len(body),
            seconds=seconds,
        )
        return [body]

    def _lookup(
        self,
        environ: dict[str, Any],
        request: WSGIRequest,
        kind: str,
        dataset_id: str | None,
        rows_query: tuple[int, int] | None,
    ) -> tuple[bytes, str] | None:
        """The answer's body and the user's id from the cache, or None (Django answers)."""
        client_of = getattr(cache, "client", None)
        if client_of is None or not hasattr(client_of, "get_client"):
            return None  # not django-redis: the file cache of embedded mode, the dummy cache
        token = environ["HTTP_AUTHORIZATION"].split()[1]
        window = _read_window()
        counter = _split(cache.make_key(user_counter_key("read", _UID)))
        if kind == "list":
            page_size = str(NewestFirstCursorPagination.page_size)
            value_parts = _split(cache.make_key(list_key(_UID, _VERSION, page_size)), _VERSION)
            version = _split(cache.make_key(list_version_key(_UID)))
            generation = ""
        else:
            entry_kind = "detail" if kind == "rows" else kind
            entry = cache.make_key(entry_key(_UID, str(dataset_id), entry_kind))
            value_parts = (*_split(entry), "")
            version = ("", "")
            generation = cache.make_key(generation_key(str(dataset_id)))
        redis = client_of.get_client(write=True)
        script = self._scripts.get(id(redis))
        if script is None:
            script = self._scripts[id(redis)] = redis.register_script(_SCRIPT)
        keys = [cache.make_key(user_id_key(token))]
        args = [window[1] if window else 0, *counter, *value_parts, *version, generation]
        found = script(keys=keys, args=args)
        if found[0] == 0 and _token_checked(environ, token):
            found = script(keys=keys, args=args)
        if found[0] != 1:
            return None  # unknown, revoked or inactive: Django answers 401
        uid, count, ttl, raw, raw_generation = found[1:]
        if window is not None:
            environ[COUNTED] = (
                user_counter_key("read", int(uid)),
                int(count),
                float(ttl if ttl > 0 else window[1]),
            )
            if int(count) > window[0]:
                return None  # Django answers the 429 (and counts nothing more)
        if raw is None:
            return None
        decode = client_of.decode
        payload: dict[str, Any] | None
        if kind == "list":
            page = decode(raw)
            if not isinstance(page, dict):
                return None
            payload = {**page, "results": [open_payload(item) for item in page["results"]]}
        else:
            current = (decode(raw_generation) if raw_generation else "") or ""
            value = fresh_value(decode(raw), current)
            if value is None:
                return None
            if kind == "rows":
                payload = _rows(environ, request, int(uid), value, *(rows_query or (0, 0)))
            else:
                payload = open_payload(value) if kind == "detail" else value
        if payload is None:
            return None
        return JSONRenderer().render(payload, "application/json", {}), str(int(uid))

    def _learning(
        self, kind: str, secure: bool, start_response: Callable[..., Any]
    ) -> Callable[..., Any]:
        """``start_response`` that keeps the headers of Django's 200 for this kind."""

        def learn(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if (kind, secure) not in self._headers and status.startswith("200 "):
                names = {name.lower() for name, _ in headers}
                if "set-cookie" not in names and "application/json" in _content_type(headers):
                    self._headers[(kind, secure)] = [
                        (name, value)
                        for name, value in headers
                        if name.lower() not in ("content-length", REQUEST_ID_HEADER.lower())
                    ]
            return start_response(status, headers, exc_info)

        return learn


def _rows(
    environ: dict[str, Any],
    request: WSGIRequest,
    owner_id: int,
    detail: dict[str, Any],
    after: int,
    limit: int,
) -> dict[str, Any] | None:
    """The rows page's body, or None when the cached detail cannot open the rows.

    Its queries are short indexed reads: they wait without yielding (core/dbwait.py),
    once a connection is taken from the pool."""
    request_started.send(sender=HotReads, environ=environ)
    try:
        connection.ensure_connection()
        with without_yielding():
            page = row_page_from_detail(owner_id=owner_id, detail=detail, after=after, limit=limit)
    finally:
        request_finished.send(sender=HotReads)
    if page is None:
        return None
    return row_page_data(
        page.columns, page.rows, page.has_more, limit, request.build_absolute_uri, request.path
    )


def _token_checked(environ: dict[str, Any], token: str) -> bool:
    """Check a token whose cached user id has expired in the database (DRF's rules) and
    cache it again; False when it does not pass (Django answers)."""
    request_started.send(sender=HotReads, environ=environ)
    try:
        connection.ensure_connection()
        with without_yielding():
            user = active_token_user(token)
    finally:
        request_finished.send(sender=HotReads)
    if user is None:
        return False
    remember_token(token, *user)
    return True


def _rows_query(query: str) -> tuple[int, int] | None:
    """``(after, limit)`` from a query string of ``after`` and ``limit`` (each at most
    once, in range), else None: Django answers the rest (defaults, 400s)."""
    values: dict[str, int] = {}
    for part in query.split("&") if query else ():
        match = _ROWS_QUERY.match(part)
        if match is None or match.group(1) in values:
            return None
        values[match.group(1)] = int(match.group(2))
    limit = values.get("limit", ROWS_DEFAULT_LIMIT)
    if not 1 <= limit <= ROWS_MAX_LIMIT:
        return None
    return values.get("after", 0), limit


def _eligible(environ: dict[str, Any]) -> re.Match[str] | None:
    """The path's match when the request is one the hot path may answer (the query
    string is checked by the caller: only a rows page may have one)."""
    if environ.get("REQUEST_METHOD") != "GET":
        return None
    match = _PATH.match(environ.get("PATH_INFO", ""))
    if match is None or not settings.CSVAULT_HOT_READS:
        return None
    if environ.get("HTTP_COOKIE") or environ.get("CONTENT_LENGTH", "0") not in ("", "0"):
        return None
    if "HTTP_TRANSFER_ENCODING" in environ:
        return None
    if environ.get("HTTP_ACCEPT", "").strip() not in _PLAIN_JSON:
        return None
    parts = environ.get("HTTP_AUTHORIZATION", "").split()
    if len(parts) != 2 or parts[0].lower() != "token":
        return None
    return match


def _read_window() -> tuple[int, int] | None:
    """The ``read`` scope's (limit, seconds), or None when reads are not throttled."""
    rates: Any = api_settings.DEFAULT_THROTTLE_RATES
    rate = rates.get("read")
    if not rate:
        return None
    limit, duration = SimpleRateThrottle.parse_rate(None, rate)  # type: ignore[arg-type]
    if limit is None or duration is None:
        return None
    return int(limit), int(duration)


def _split(key: str, *more: str) -> tuple[str, ...]:
    """A key template cut at its user id placeholder (and at ``more`` after it)."""
    head, tail = key.split(_UID)
    parts = [head]
    for mark in more:
        middle, tail = tail.split(mark)
        parts.append(middle)
    return (*parts, tail)


def _content_type(headers: list[tuple[str, str]]) -> str:
    return next((value for name, value in headers if name.lower() == "content-type"), "")


def _log(
    request: WSGIRequest, rid: str, user_id: str, dataset_id: str | None, seconds: float
) -> None:
    """The access line RequestContextMiddleware writes, with the same context."""
    logs.request_id.set(rid)
    logs.user_id.set(user_id)
    logs.dataset_id.set(dataset_id)
    try:
        logger.info(
            "%s %s %s",
            "GET",
            request.path,
            200,
            extra={
                "method": "GET",
                "path": request.path,
                "status": 200,
                "duration_ms": round(seconds * 1000, 1),
            },
        )
    finally:
        logs.clear()
