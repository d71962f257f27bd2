"""/readyz against the real configured services, and against closed ports."""

from __future__ import annotations

import io
import json
import logging
import os
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from csvault.core import health
from csvault.core.health import readiness, safe_reason
from csvault.scanning import get_scanner
from tests.helpers import clamd_unavailable, free_port

pytestmark = pytest.mark.django_db

PASSWORD = "hunter2-not-in-any-answer"


def test_healthz_stays_a_plain_liveness_check() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


PARTS = {"database", "broker", "cache", "storage", "scanner"}


def test_it_is_ready_when_every_dependency_answers() -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    # Anonymous: names and ok only (no vendor, backend, scanner or address).
    assert body == {"status": "ok", "checks": {part: {"ok": True} for part in PARTS}}
    assert response["Cache-Control"] == "no-store"
    ready, checks = readiness()  # the details, for manage.py readiness
    scanner = get_scanner()
    assert ready
    assert checks["scanner"]["name"] == scanner.name
    assert checks["scanner"]["minimal"] is scanner.minimal


def test_manage_py_readiness_prints_the_details(settings: Any) -> None:
    settings.CLAMD_URL = f"tcp://127.0.0.1:{free_port()}"
    out = io.StringIO()
    with pytest.raises(CommandError, match="not ready: scanner"):
        call_command("readiness", stdout=out)
    checks = json.loads(out.getvalue())["checks"]
    assert checks["scanner"]["ok"] is False
    assert checks["scanner"]["error"]


def test_a_result_is_reused_for_the_cache_period(settings: Any, monkeypatch: Any) -> None:
    runs: list[str] = []
    real = health.CHECKS["storage"]

    def counted() -> dict[str, Any]:
        runs.append("storage")
        return real()

    monkeypatch.setitem(health.CHECKS, "storage", counted)
    monkeypatch.setattr(health, "_last", None)
    settings.CSVAULT_READYZ_CACHE_SECONDS = 60
    for _ in range(5):
        assert Client().get("/readyz").status_code == 200
    assert runs == ["storage"]  # one storage probe for five hits
    settings.CSVAULT_READYZ_CACHE_SECONDS = 0
    Client().get("/readyz")
    assert runs == ["storage", "storage"]


def test_it_reports_the_built_in_scanner_as_minimal(settings: Any) -> None:
    settings.CLAMD_URL = ""
    scanner = readiness()[1]["scanner"]
    assert scanner["ok"] is True
    assert scanner["name"] == "builtin"
    assert scanner["minimal"] is True


def test_it_reports_clamd_as_a_full_scanner(settings: Any) -> None:
    url = os.environ.get("CSVAULT_TEST_CLAMD_URL")
    if not url:
        clamd_unavailable("CSVAULT_TEST_CLAMD_URL is not set")
    settings.CLAMD_URL = url
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    scanner = readiness()[1]["scanner"]
    assert (scanner["ok"], scanner["name"], scanner["minimal"]) == (True, "clamd", False)


def test_it_names_cache_and_broker_when_redis_is_unreachable(settings: Any, caplog: Any) -> None:
    port = free_port()
    settings.CELERY_BROKER_URL = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    settings.CACHE_URL = f"redis://:{PASSWORD}@127.0.0.1:{port}/1"
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": settings.CACHE_URL,
            "OPTIONS": {
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
            },
        }
    }
    with caplog.at_level(logging.WARNING, logger="csvault.core.health"):
        response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == ["broker", "cache"]
    for part in ("broker", "cache"):
        assert body["checks"][part] == {"ok": False}  # the reason is logged, not shown
        assert f"{part}: " in caplog.text
    assert body["checks"]["database"]["ok"] is True
    assert PASSWORD not in response.content.decode()
    assert PASSWORD not in caplog.text


def test_a_cache_turned_off_is_ready(settings: Any) -> None:
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    assert readiness()[1]["cache"]["backend"] == "DummyCache"


def test_it_names_the_scanner_when_clamd_is_unreachable(settings: Any) -> None:
    settings.CLAMD_URL = f"tcp://127.0.0.1:{free_port()}"
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["scanner"]
    assert "127.0.0.1" not in response.content.decode()


def test_it_names_storage_when_the_directory_cannot_be_written(
    settings: Any, tmp_path: Any
) -> None:
    missing = tmp_path / "file-not-dir"
    missing.write_text("x")  # a file where the storage wants a directory
    settings.STORAGES = {
        **settings.STORAGES,
        "datasets": {
            "BACKEND": "csvault.core.storage.LocalStorage",
            "OPTIONS": {"location": str(missing)},
        },
    }
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["storage"]


@pytest.mark.parametrize(
    ("message", "leak"),
    [
        ("Error connecting to redis://:s3cr3t@db.internal:6379/0", "s3cr3t"),
        ("could not connect: postgres://app:pa55word@10.0.0.5/csvault", "pa55word"),
        ("amqp://guest:guestpw@rabbit:5672// refused", "guestpw"),
    ],
)
def test_reasons_never_carry_credentials(message: str, leak: str) -> None:
    reason = safe_reason(ConnectionError(message))
    assert leak not in reason
    assert reason.startswith("ConnectionError: ")
    assert "***@" in reason
