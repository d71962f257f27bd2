"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``: its dependencies do).

``/readyz`` checks the database, the broker, the cache, the dataset storage and the
malware scanner, each with a short timeout, and answers 200, or 503 naming every part
that failed: component names and ok/failing only (it is anonymous). The reasons (the
error's type and a short message with credentials in URLs masked) go to the log, and
``manage.py readiness`` prints them with each part's details. A result is reused for
``CSVAULT_READYZ_CACHE_SECONDS`` per process, so probes hitting ``/readyz`` write one
storage probe and ping the scanner once per period, not once per hit.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from csvault.core.errors import StorageUnavailable
from csvault.core.storage import dataset_storage

logger = logging.getLogger(__name__)

_CREDENTIALS_IN_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]*@", re.IGNORECASE)
_REASON_MAX = 200


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


class CheckFailed(Exception):
    """A readiness check found its part not ready; the message is the reason."""


def _secrets() -> list[str]:
    """Passwords that could appear in an error message (the configured URLs, the store's key)."""
    from urllib.parse import urlsplit

    found = [str(settings.DATABASES["default"].get("PASSWORD") or "")]
    found.append(str(settings.STORAGES["datasets"].get("OPTIONS", {}).get("secret_key") or ""))
    for url in (settings.CELERY_BROKER_URL, getattr(settings, "CACHE_URL", "")):
        try:
            found.append(urlsplit(url).password or "")
        except ValueError:
            continue
    return [s for s in found if s]


def safe_reason(exc: BaseException) -> str:
    """A short, secret-free description of why a check failed."""
    text = str(exc) if isinstance(exc, CheckFailed) else f"{type(exc).__name__}: {exc}"
    text = _CREDENTIALS_IN_URL.sub(r"\g<scheme>***@", text)
    for secret in _secrets():
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text[:_REASON_MAX]


# --- the checks: each returns extra details, or raises -------------------------------


def check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def check_broker() -> dict[str, Any]:
    url: str = settings.CELERY_BROKER_URL
    timeout = settings.CSVAULT_PROBE_TIMEOUT
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
        return {"transport": "redis"}
    if url.startswith("filesystem://"):
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        for key in ("data_folder_in", "data_folder_out", "control_folder"):
            folder = Path(str(options[key]))
            if not folder.is_dir():
                raise CheckFailed(f"{key} folder is missing")
            if not _writable(folder):
                raise CheckFailed(f"{key} folder is not writable")
        return {"transport": "filesystem"}
    from kombu import Connection

    with Connection(url, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        return {"transport": conn.transport_cls}


def _writable(folder: Path) -> bool:
    import os

    return os.access(folder, os.W_OK | os.X_OK)


def check_cache() -> dict[str, Any]:
    backend = settings.CACHES["default"]["BACKEND"]
    if backend.startswith("django_redis."):
        # The cache backend ignores Redis errors (it degrades to the database), so
        # ask the client underneath directly.
        from django_redis import get_redis_connection

        get_redis_connection("default").ping()
        return {"backend": "redis"}
    if backend.endswith(".DummyCache"):
        return {"backend": "DummyCache", "note": "caching is off"}
    from django.core.cache import cache

    key, value = f"readyz:{uuid.uuid4().hex}", uuid.uuid4().hex
    cache.set(key, value, timeout=10)
    try:
        if cache.get(key) != value:
            raise CheckFailed("a value written to the cache could not be read back")
    finally:
        cache.delete(key)
    return {"backend": backend.rsplit(".", 1)[-1]}


def check_storage() -> dict[str, Any]:
    """A probe file written, read back (S3) and deleted; the store's own words on failure."""
    try:
        details: dict[str, Any] = dataset_storage().ping()
    except StorageUnavailable as exc:
        raise CheckFailed(exc.message) from None
    return details


def check_scanner() -> dict[str, Any]:
    from csvault.core.metrics import _probe_scanner

    scanner = _probe_scanner()
    scanner.ping()
    details: dict[str, Any] = {"name": scanner.name, "minimal": bool(scanner.minimal)}
    if scanner.minimal:
        details["note"] = "built-in matcher: only the shipped signatures; use clamd in production"
    return details


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "database": check_database,
    "broker": check_broker,
    "cache": check_cache,
    "storage": check_storage,
    "scanner": check_scanner,
}


def readiness() -> tuple[bool, dict[str, dict[str, Any]]]:
    """Run every check; (all passed, {name: {"ok", "ms", details or "error"}})."""
    results: dict[str, dict[str, Any]] = {}
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            entry: dict[str, Any] = {"ok": True, **check()}
        except Exception as exc:
            entry = {"ok": False, "error": safe_reason(exc)}
        entry["ms"] = round((time.monotonic() - started) * 1000, 1)
        results[name] = entry
    return all(entry["ok"] for entry in results.values()), results


_last: tuple[float, bool, dict[str, bool]] | None = None
_last_lock = threading.Lock()


def _cached_readiness() -> tuple[bool, dict[str, bool]]:
    """``(ready, {name: ok})``, run at most once per ``CSVAULT_READYZ_CACHE_SECONDS`` in
    this process (concurrent probes wait for the one that runs); failures are logged."""
    global _last
    with _last_lock:
        ttl = settings.CSVAULT_READYZ_CACHE_SECONDS
        if _last is not None and time.monotonic() - _last[0] < ttl:
            return _last[1], _last[2]
        ready, checks = readiness()
        if not ready:
            logger.warning(
                "not ready: %s",
                "; ".join(f"{n}: {e['error']}" for n, e in checks.items() if not e["ok"]),
            )
        oks = {name: bool(entry["ok"]) for name, entry in checks.items()}
        _last = (time.monotonic(), ready, oks)
        return ready, oks


def readyz(request: HttpRequest) -> JsonResponse:
    ready, oks = _cached_readiness()
    body: dict[str, Any] = {
        "status": "ok" if ready else "unavailable",
        "checks": {name: {"ok": ok} for name, ok in oks.items()},
    }
    if not ready:
        body["failing"] = [name for name, ok in oks.items() if not ok]
    return JsonResponse(body, status=200 if ready else 503, headers={"Cache-Control": "no-store"})
