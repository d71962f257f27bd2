"""Shared fixtures: users with tokens, API clients, and real Celery worker processes
(the helpers they use are in tests/helpers.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.helpers import SESSION_QUEUE, Worker, client_for


# Hypothesis: no per-example deadline in CI (a loaded machine is not a failing test);
# "sanitize" runs the property tests with CSVAULT_TEST_EXAMPLES times more examples
# (see tests/csvio) under the sanitizer build. HYPOTHESIS_PROFILE picks one; CI picks "ci".
hypothesis_settings.register_profile("ci", deadline=None, print_blob=True)
hypothesis_settings.register_profile("sanitize", deadline=None, print_blob=True)
hypothesis_settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default")
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI a missing service is a failure: CSVAULT_TEST_EXPECT names what must be in use."""
    expected = {s for s in os.environ.get("CSVAULT_TEST_EXPECT", "").split(",") if s}
    if not expected:
        return
    import django

    django.setup()
    from django.conf import settings as s

    problems = []
    if "postgresql" in expected and s.DATABASES["default"]["ENGINE"] != (
        "django.db.backends.postgresql"
    ):
        problems.append("PostgreSQL expected but DATABASE_URL does not point at it")
    if "redis" in expected:
        if not s.CELERY_BROKER_URL.startswith("redis://"):
            problems.append("Redis broker expected but CELERY_BROKER_URL is not redis://")
        import redis

        try:
            redis.Redis.from_url(s.CELERY_BROKER_URL, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            problems.append(f"Redis broker unreachable: {exc}")
    if "native" in expected:
        from csvault.csvio.fastcsv import FAST_AVAILABLE

        if not FAST_AVAILABLE:
            problems.append("the C fast path csvault.csvio._csvblocks is not built (needs gcc)")
    if "clamd" in expected:
        from csvault.scanning import ScannerUnavailable, get_scanner

        if not s.CLAMD_URL:
            problems.append("clamd expected but CLAMD_URL is not set")
        else:
            try:
                get_scanner().ping()
            except ScannerUnavailable as exc:
                problems.append(f"clamd unreachable at {s.CLAMD_URL}: {exc}")
    if problems:
        pytest.exit("required services missing: " + "; ".join(problems), returncode=3)


@pytest.fixture(autouse=True, scope="session")
def _private_queue() -> None:
    from config.celery import app

    app.conf.task_default_queue = SESSION_QUEUE


@pytest.fixture(autouse=True)
def _plain_http(settings: Any) -> None:
    # Production settings redirect to HTTPS; the test client speaks plain HTTP.
    settings.SECURE_SSL_REDIRECT = False
    # A fast hasher: the production one costs about a second per user created.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Throttle counters and cached reads must not leak from one test into the next."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def make_user(django_user_model: Any) -> Callable[[str], Any]:
    def make(username: str) -> Any:
        user = django_user_model.objects.create_user(username=username, password="pw-" + username)
        Token.objects.create(user=user)
        return user

    return make


@pytest.fixture
def user(make_user: Callable[[str], Any]) -> Any:
    return make_user("alice")


@pytest.fixture
def other_user(make_user: Callable[[str], Any]) -> Any:
    return make_user("mallory")


@pytest.fixture
def api(user: Any) -> APIClient:
    return client_for(user)


@pytest.fixture
def other_api(other_user: Any) -> APIClient:
    return client_for(other_user)


# --- a real Celery worker process --------------------------------------------


@pytest.fixture
def worker_factory(
    transactional_db: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], Worker]]:
    """Make (not yet started) worker processes on the session's queue; all stopped after."""
    workers: list[Worker] = []
    log_dir = tmp_path_factory.mktemp("workers")

    def make() -> Worker:
        workers.append(Worker(SESSION_QUEUE, log_dir))
        return workers[-1]

    try:
        yield make
    finally:
        for worker in workers:
            worker.stop()


@pytest.fixture
def celery_worker(worker_factory: Callable[[], Worker]) -> Worker:
    """A fresh, started worker process for one test, consuming the session's private queue."""
    worker = worker_factory()
    worker.start()
    return worker
