"""One DRF throttle with a scope per kind of request, per user (per address when anonymous).

Scopes and their rates (``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``, set from the
``CSVAULT_THROTTLE_*`` environment variables): ``upload`` for POSTs to a view that
declares ``throttle_upload = True``, ``write`` for other unsafe methods, ``read`` for
GET/HEAD, ``login`` for views that declare ``throttle_scope = "login"`` (counted per
client address), ``anon`` for other anonymous requests. A throttled request gets 429
with a Retry-After header. Counters live in the default cache (Redis in production).
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class ScopedUserThrottle(SimpleRateThrottle):
    def __init__(self) -> None:  # the scope, hence the rate, is known per request
        self.scope: str | None = None

    def scope_for(self, request: Request, view: Any) -> str:
        declared = getattr(view, "throttle_scope", None)
        if declared:
            return str(declared)
        if not (request.user and request.user.is_authenticated):
            return "anon"
        if request.method == "POST" and getattr(view, "throttle_upload", False):
            return "upload"
        return "read" if request.method in _SAFE else "write"

    def get_rate(self) -> str | None:
        # Read at request time (not import time) so settings changes take effect.
        rates: Any = api_settings.DEFAULT_THROTTLE_RATES
        rate = rates.get(self.scope or "")
        return str(rate) if rate else None

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = self.scope_for(request, view)
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if self.scope != "login" and user and user.is_authenticated:
            ident = f"u{user.pk}"
        else:
            ident = f"a{self.get_ident(request)}"
        return f"throttle:{self.scope}:{ident}"
