"""A minimum rate for request bodies: a body that arrives slower is cut with 408.

The web tier runs gunicorn's gevent worker (scripts/gunicorn.conf.py): a connection that
sends slowly holds a greenlet, not a thread, so slow clients cannot starve the others.
They would still hold memory, a file descriptor and (for an upload) an open spool for as
long as they like; this WSGI wrapper bounds that. After a grace period of
``CSVAULT_BODY_GRACE_SECONDS`` (30), the body must keep up with ``CSVAULT_MIN_BODY_RATE``
bytes a second (10,240) on average since the request began: each read of the body must
finish by the time that schedule says, or the request is answered 408 and the connection
closed. A declared ``Content-Length`` larger than what is sent ends the same way.

The deadline needs a cooperative timeout (gevent's), so it applies only in a gevent
worker; under threads (``WEB_WORKER_CLASS=gthread``) bodies are read without it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.db import connections

logger = logging.getLogger(__name__)

#: A body is read in pieces of at most this many bytes, each with its own deadline.
PIECE = 64 * 1024


class BodyTooSlow(OSError):
    """The body fell behind the minimum rate (an OSError, so that Django's request
    reading turns it into UnreadablePostError like any other broken body)."""


def _gevent_timeout() -> Any:
    try:
        from gevent import Timeout, monkey
    except ImportError:
        return None
    return Timeout if monkey.is_module_patched("socket") else None


class MinRateInput:
    """``wsgi.input`` with a deadline on every read (see the module docstring)."""

    def __init__(self, inner: Any, *, rate: int, grace: float, timeout: Any) -> None:
        self.inner = inner
        self.rate = rate
        self.grace = grace
        self.timeout = timeout
        self.start = time.monotonic()
        self.received = 0
        self.too_slow = False

    def _deadline(self, size: int) -> float:
        return self.start + self.grace + (self.received + size) / self.rate

    def _read(self, method: Callable[[int], bytes], size: int) -> bytes:
        if self.too_slow:
            raise BodyTooSlow("the request body is too slow")
        _release_database()
        seconds = max(0.001, self._deadline(size) - time.monotonic())
        try:
            with self.timeout(seconds, BodyTooSlow("the request body is too slow")):
                data = method(size)
        except BodyTooSlow:
            self.too_slow = True
            raise
        self.received += len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while data := self._read(self.inner.read, PIECE):
                parts.append(data)
            return b"".join(parts)
        parts = []
        left = size
        while left > 0:
            data = self._read(self.inner.read, min(left, PIECE))
            if not data:
                break
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        limit = PIECE if size is None or size < 0 else min(size, PIECE)
        return self._read(self.inner.readline, limit)

    def __iter__(self) -> Any:
        while line := self.readline():
            yield line


class MinBodyRate:
    """WSGI middleware: a request whose body falls behind the minimum rate is answered
    408 (JSON, ``Connection: close``) whatever the application made of the broken read."""

    def __init__(self, app: Callable[..., Iterable[bytes]], *, rate: int, grace: float) -> None:
        self.app = app
        self.rate = rate
        self.grace = grace
        self.timeout = _gevent_timeout()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.timeout is None or self.rate <= 0 or not environ.get("CONTENT_LENGTH"):
            return self.app(environ, start_response)
        body = MinRateInput(
            environ["wsgi.input"], rate=self.rate, grace=self.grace, timeout=self.timeout
        )
        environ["wsgi.input"] = body
        started: list[Any] = []

        def deferred(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, headers, exc_info]
            return lambda data: None  # no application here writes through this callable

        result = self.app(environ, deferred)
        if not body.too_slow:
            start_response(*started)
            return result
        if hasattr(result, "close"):
            result.close()
        logger.warning(
            "request body cut: %s bytes in %.1f s, slower than %s bytes/s",
            body.received,
            time.monotonic() - body.start,
            self.rate,
        )
        payload = {
            "error": {
                "code": "body_too_slow",
                "message": f"The request body arrived slower than {self.rate} bytes a second; "
                "send it again over a faster connection.",
            }
        }
        start_response(
            "408 Request Timeout",
            [("Content-Type", "application/json"), ("Connection", "close")],
        )
        return [json.dumps(payload).encode()]


def _release_database() -> None:
    """Give a pooled database connection back while waiting for the client: a slow body
    must not hold one of the pool's few connections (the next query takes one again)."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()
