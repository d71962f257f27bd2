"""/readyz against the real configured services, and against closed ports."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.test import Client

from csvault.core.health import safe_reason
from csvault.scanning import get_scanner
from tests.helpers import clamd_unavailable, free_port

pytestmark = pytest.mark.django_db

PASSWORD = "hunter2-not-in-any-answer"


def test_healthz_stays_a_plain_liveness_check() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_it_is_ready_when_every_dependency_answers() -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "cache", "storage", "scanner"}
    assert all(check["ok"] for check in body["checks"].values())
    scanner = get_scanner()
    assert body["checks"]["scanner"]["name"] == scanner.name
    assert body["checks"]["scanner"]["minimal"] is scanner.minimal
    assert response["Cache-Control"] == "no-store"


def test_it_reports_the_built_in_scanner_as_minimal(settings: Any) -> None:
    settings.CLAMD_URL = ""
    scanner = Client().get("/readyz").json()["checks"]["scanner"]
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
    scanner = response.json()["checks"]["scanner"]
    assert (scanner["ok"], scanner["name"], scanner["minimal"]) == (True, "clamd", False)


def test_it_names_cache_and_broker_when_redis_is_unreachable(settings: Any) -> None:
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
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == ["broker", "cache"]
    for part in ("broker", "cache"):
        assert body["checks"][part]["ok"] is False
        assert body["checks"][part]["error"]
    assert body["checks"]["database"]["ok"] is True
    assert PASSWORD not in response.content.decode()


def test_a_cache_turned_off_is_ready(settings: Any) -> None:
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["cache"]["backend"] == "DummyCache"


def test_it_names_the_scanner_when_clamd_is_unreachable(settings: Any) -> None:
    settings.CLAMD_URL = f"tcp://127.0.0.1:{free_port()}"
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["scanner"]
    assert body["checks"]["scanner"]["error"]


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
