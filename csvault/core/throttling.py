"""One DRF throttle with a scope per kind of request, per user (per address when anonymous).

Scopes and their rates (``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``, set from the
``CSVAULT_THROTTLE_*`` environment variables): ``upload`` for POSTs to a view that
declares ``throttle_upload = True``, ``chunk`` for PATCHes to a view that declares
``throttle_chunks = True`` (a resumable upload's chunks), ``write`` for other unsafe
methods, ``read`` for GET/HEAD, ``login`` for views that declare
``throttle_scope = "login"`` (counted per client address), ``anon`` for other anonymous
requests. A throttled request gets 429
with a Retry-After header.

Counting is a fixed window per scope and caller that opens with the caller's first
request: one counter that expires with its window, so on Redis a request costs one
round trip (INCR + EXPIRE NX + TTL in a pipeline) instead of DRF's read-modify-write
of a timestamp list. If the cache is down, requests are let through (and logged).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)

_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class ScopedUserThrottle(SimpleRateThrottle):
    def __init__(self) -> None:  # the scope, hence the rate, is known per request
        self.scope: str | None = None
        self._wait: float | None = None

    def scope_for(self, request: Request, view: Any) -> str:
        declared = getattr(view, "throttle_scope", None)
        if declared:
            return str(declared)
        if not (request.user and request.user.is_authenticated):
            return "anon"
        if request.method == "POST" and getattr(view, "throttle_upload", False):
            return "upload"
        if request.method == "PATCH" and getattr(view, "throttle_chunks", False):
            return "chunk"
        return "read" if request.method in _SAFE else "write"

    def get_rate(self) -> str | None:
        # Read at request time (not import time) so settings changes take effect.
        rates: Any = api_settings.DEFAULT_THROTTLE_RATES
        rate = rates.get(self.scope or "")
        return str(rate) if rate else None

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if self.scope != "login" and user and user.is_authenticated:
            ident = f"u{user.pk}"
        else:
            ident = f"a{self.get_ident(request)}"
        return f"throttle:{self.scope}:{ident}"

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = self.scope_for(request, view)
        rate = self.get_rate()
        if rate is None:
            return True
        limit, duration = self.parse_rate(rate)
        if limit is None or duration is None:
            return True
        key = str(self.get_cache_key(request, view))
        try:
            count, remaining = _increment(key, duration)
        except Exception:  # the cache is down: fail open rather than refuse everyone
            logger.warning("throttle counter unavailable; request let through", exc_info=True)
            return True
        if count <= limit:
            return True
        self._wait = remaining
        return False

    def wait(self) -> float | None:
        return self._wait


def _increment(key: str, duration: int) -> tuple[int, float]:
    """Add one to the caller's counter; (count in this window, seconds until it ends)."""
    client_of = getattr(cache, "client", None)
    if client_of is not None and hasattr(client_of, "get_client"):  # django-redis
        redis = client_of.get_client(write=True)
        full_key = cache.make_key(key)
        pipe = redis.pipeline(transaction=False)
        pipe.incr(full_key)
        pipe.expire(full_key, duration, nx=True)
        pipe.ttl(full_key)
        count, _, ttl = pipe.execute()
        return int(count), float(ttl if ttl and ttl > 0 else duration)
    # Other caches: the window's start is kept next to the counter.
    started_key = f"{key}:started"
    if cache.add(key, 1, timeout=duration):
        cache.set(started_key, time.time(), timeout=duration)
        return 1, float(duration)
    try:
        count = int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=duration)
        cache.set(started_key, time.time(), timeout=duration)
        return 1, float(duration)
    started = cache.get(started_key) or time.time()
    return count, max(1.0, started + duration - time.time())
