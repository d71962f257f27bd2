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
request and ends when its Retry-After says: one counter that expires with its window,
so on Redis a request costs one round trip (INCR + EXPIRE NX + TTL in a pipeline)
instead of DRF's read-modify-write of a timestamp list. Other caches (the file cache of
embedded mode) keep the window's start and count under a key of that start, so a
write that renews an entry's expiry cannot stretch the window. When the cache cannot
count (it is down, or the dummy cache), a per-process limiter counts instead (logged):
the limits then hold per web process, never not at all.

A hot read (csvault/datasets/hotreads.py) counts itself in Redis before it reaches
Django; when it then hands the request to Django, it leaves the count in the WSGI
environ under :data:`COUNTED`, and the throttle takes that count instead of counting
the request twice.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.core.cache import cache, caches
from django.core.cache.backends.dummy import DummyCache
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)

_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

#: WSGI environ key: ``(counter key, count, seconds left)`` of a request already counted.
COUNTED = "csvault.throttle_counted"


def user_counter_key(scope: str, user_id: int | str) -> str:
    """The counter of an authenticated user's requests in one scope."""
    return f"throttle:{scope}:u{user_id}"


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
            return user_counter_key(str(self.scope), user.pk)
        return f"throttle:{self.scope}:a{self.get_ident(request)}"

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = self.scope_for(request, view)
        rate = self.get_rate()
        if rate is None:
            return True
        limit, duration = self.parse_rate(rate)
        if limit is None or duration is None:
            return True
        key = str(self.get_cache_key(request, view))
        counted = request.META.pop(COUNTED, None)
        try:
            if counted is not None and counted[0] == key:
                count, remaining = counted[1], counted[2]
            else:
                count, remaining = _increment(key, duration)
        except Exception:  # the cache is down: count in this process instead
            logger.warning("throttle counter unavailable; counting in this process", exc_info=True)
            count, remaining = LOCAL.increment(key, duration)
        if count <= limit:
            return True
        self._wait = remaining
        return False

    def wait(self) -> float | None:
        return self._wait


class LocalWindows:
    """Fixed windows counted in this process: the fallback when the cache cannot count.
    At most ``max_keys`` callers are tracked (expired windows go first, then the oldest)."""

    def __init__(self, max_keys: int = 50_000) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}
        self._max_keys = max_keys

    def increment(self, key: str, duration: int) -> tuple[int, float]:
        now = time.time()
        with self._lock:
            started, count = self._windows.pop(key, (now, 0))
            if now >= started + duration:
                started, count = now, 0
            self._windows[key] = (started, count + 1)  # re-inserted: newest last
            if len(self._windows) > self._max_keys:
                self._shrink(now, duration)
        return count + 1, max(1.0, started + duration - now)

    def _shrink(self, now: float, duration: int) -> None:
        for old in [k for k, (t, _) in self._windows.items() if now >= t + duration]:
            del self._windows[old]
        while len(self._windows) > self._max_keys // 2:
            del self._windows[next(iter(self._windows))]


LOCAL = LocalWindows()


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
    if isinstance(caches["default"], DummyCache):  # a cache turned off counts nothing
        return LOCAL.increment(key, duration)
    # Other caches: the window's start, written once (add) with the window's lifetime,
    # and a counter under a key of that start (their incr may renew its expiry: harmless).
    now = time.time()
    started_key = f"{key}:started"
    started = cache.get(started_key)
    if not isinstance(started, float) or now >= started + duration:
        cache.delete(started_key)
        cache.add(started_key, now, timeout=duration)
        started = cache.get(started_key)
        if not isinstance(started, float):
            return LOCAL.increment(key, duration)
    window = f"{key}:{started!r}"
    if cache.add(window, 1, timeout=duration):
        count = 1
    else:
        try:
            count = int(cache.incr(window))
        except ValueError:  # expired between add and incr
            cache.add(window, 1, timeout=duration)
            count = 1
    return count, max(1.0, started + duration - now)
