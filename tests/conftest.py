"""Shared fixtures: users with tokens, API clients, and real Celery worker processes
(the helpers they use are in tests/helpers.py)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from csvault.core.logs import ContextFilter, JsonFormatter
from tests.helpers import SESSION_QUEUE, Worker, client_for

# Hypothesis: no per-example deadline in CI (a loaded machine is not a failing test);
# "sanitize" runs the property tests with CSVAULT_TEST_EXAMPLES times more examples
# (see tests/csvio) under the sanitizer build. HYPOTHESIS_PROFILE picks one; CI picks "ci".
hypothesis_settings.register_profile("ci", deadline=None, print_blob=True)
hypothesis_settings.register_profile("sanitize", deadline=None, print_blob=True)
hypothesis_settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default")
)


# --- the services a run must have, and the skips it may have ---------------------------

#: What CSVAULT_TEST_EXPECT may name (comma-separated); each is checked at session start
#: and a failed check ends the run. An unknown name is an error, not a no-op.
EXPECTATIONS = {
    "postgresql": "the database is PostgreSQL",
    "redis": "the Celery broker and the cache are Redis, both answering",
    "embedded": "SQLite, the filesystem broker and the file cache",
    "clamd": "clamd answers at CLAMD_URL (or CSVAULT_TEST_CLAMD_URL)",
    "native": "the C fast path csvault.csvio._csvblocks is built",
    "s3": "dataset files are in an S3 bucket (STORAGE_URL=s3://...) that answers",
}

#: Tests allowed to skip, per mode; with CI or CSVAULT_TEST_EXPECT set, any other skip
#: fails the run.
ALLOWED_SKIPS: dict[str, dict[str, str]] = {
    "postgresql": {},
    "embedded": {
        "tests/integration/test_faults.py::"
        "test_the_workers_database_connection_killed_mid_batch_resumes": "PostgreSQL only",
        "tests/integration/test_ingest_during_scan.py::"
        "test_a_lost_connection_after_the_verdict_resumes_the_ingest_without_a_second_scan": (
            "PostgreSQL only"
        ),
        "tests/storage/test_many_machines.py::"
        "test_a_file_uploaded_on_one_host_is_ingested_on_another_read_back_exported_and_purged": (
            "hosts that share no disk need PostgreSQL and Redis"
        ),
        "tests/core/test_dbwait.py::"
        "test_a_read_inside_without_yielding_keeps_the_greenlet_running": (
            "the connection pool is PostgreSQL's"
        ),
        **{
            f"tests/datasets/test_hotreads.py::{name}": "the hot reads need the Redis cache"
            for name in (
                "test_hot_answers_are_django_s_byte_for_byte",
                "test_every_read_is_counted_once_whichever_path_answers",
                "test_another_users_token_never_gets_the_cached_answer",
                "test_a_revoked_token_is_refused_at_once",
                "test_a_deactivated_user_is_refused_at_once",
                "test_the_next_hot_read_after_a_write_sees_it",
                "test_what_the_hot_path_leaves_to_django",
                "test_hot_answers_are_logged_and_counted",
                "test_a_late_fill_of_an_older_generation_is_never_served",
                "test_an_expired_token_entry_is_checked_again_in_the_database",
            )
        },
    },
}


def _mode() -> str:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    return "postgresql" if engine == "django.db.backends.postgresql" else "embedded"


def _service_problems(expected: set[str]) -> list[str]:
    from django.conf import settings as s

    problems = []
    if "postgresql" in expected and _mode() != "postgresql":
        problems.append("PostgreSQL expected but DATABASE_URL does not point at it")
    if "embedded" in expected:
        if _mode() != "embedded":
            problems.append("embedded mode expected but the database is not SQLite")
        if not s.CELERY_BROKER_URL.startswith("filesystem://"):
            problems.append("embedded mode expected but CELERY_BROKER_URL is set")
        if not s.CACHES["default"]["BACKEND"].endswith("FileBasedCache"):
            problems.append("embedded mode expected but the cache is not the file cache")
    if "redis" in expected:
        import redis

        for what, url in (("broker", s.CELERY_BROKER_URL), ("cache", s.CACHE_URL)):
            if not url.startswith("redis://"):
                problems.append(f"Redis {what} expected but its URL is not redis://")
                continue
            try:
                redis.Redis.from_url(url, socket_connect_timeout=2).ping()
            except redis.RedisError as exc:
                problems.append(f"Redis {what} unreachable: {exc}")
    if "s3" in expected:
        from csvault.core.errors import StorageUnavailable
        from csvault.core.storage import dataset_storage

        if not s.STORAGE_URL.startswith("s3://"):
            problems.append("S3 expected but STORAGE_URL is not s3:// (CSVAULT_TEST_STORAGE=s3)")
        else:
            try:
                dataset_storage().ping()
            except StorageUnavailable as exc:
                problems.append(f"the S3 bucket does not answer: {exc}")
    if "native" in expected:
        from csvault.csvio.fastcsv import FAST_AVAILABLE

        if not FAST_AVAILABLE:
            problems.append("the C fast path csvault.csvio._csvblocks is not built (needs gcc)")
    if "clamd" in expected:
        from csvault.scanning import ScannerUnavailable
        from csvault.scanning.clamd import ClamdScanner

        url = s.CLAMD_URL or os.environ.get("CSVAULT_TEST_CLAMD_URL", "")
        if not url:
            problems.append("clamd expected but CLAMD_URL and CSVAULT_TEST_CLAMD_URL are unset")
        else:
            try:
                ClamdScanner(url).ping()
            except ScannerUnavailable as exc:
                problems.append(f"clamd unreachable at {url}: {exc}")
    return problems


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI a missing service is a failure: CSVAULT_TEST_EXPECT names what must be in use."""
    expected = {s.strip() for s in os.environ.get("CSVAULT_TEST_EXPECT", "").split(",") if s}
    unknown = expected - EXPECTATIONS.keys()
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in EXPECTATIONS.items())
        pytest.exit(
            f"CSVAULT_TEST_EXPECT names unknown services {sorted(unknown)} (known: {known})",
            returncode=4,
        )
    if not expected:
        return
    import django

    django.setup()
    problems = _service_problems(expected)
    if problems:
        pytest.exit("required services missing: " + "; ".join(problems), returncode=3)


_skipped: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped[report.nodeid] = reason.removeprefix("Skipped: ")


def _skip_budget_enforced() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("CSVAULT_TEST_EXPECT"))


def _unexpected_skips() -> list[str]:
    allowed = ALLOWED_SKIPS[_mode()]
    return sorted(node for node in _skipped if node.split("[", 1)[0] not in allowed)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _skip_budget_enforced() and _unexpected_skips():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    write = terminalreporter.write_line
    write(f"skipped in {_mode()} mode: {len(_skipped)}")
    for node, reason in sorted(_skipped.items()):
        write(f"  {node}: {reason}")
    unexpected = _unexpected_skips()
    if unexpected:
        verdict = "FAILS the run" if _skip_budget_enforced() else "allowed outside CI"
        write(
            f"{len(unexpected)} skip(s) outside the allowlist (tests/conftest.py, "
            f"ALLOWED_SKIPS): {verdict}",
            red=_skip_budget_enforced(),
        )


# --- this session's own database and queues ---------------------------------------------


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """A PostgreSQL test database named for this session (SQLite's is in its data dir)."""
    from django.conf import settings

    from config.pytest_plugin import SESSION_TAG

    db: dict[str, Any] = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.postgresql":
        db.setdefault("TEST", {})["NAME"] = f"test_{db['NAME']}_{SESSION_TAG}"


@pytest.fixture(autouse=True)
def _purge_session_queues(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tasks a test queued (an upload queues its scan, on commit or at once) must not
    reach a later test's worker: empty the session's queues after each test that used
    the database (workers are stopped by then)."""
    yield
    uses_db = request.node.get_closest_marker("django_db") is not None
    if not uses_db and not {"db", "transactional_db"} & set(request.fixturenames):
        return
    from config.celery import all_queues, app

    with app.connection_for_write() as conn:
        for queue in all_queues(SESSION_QUEUE):
            with contextlib.suppress(*conn.channel_errors):  # never declared: empty
                conn.default_channel.queue_purge(queue)  # type: ignore[attr-defined]


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
    # /readyz answers from a fresh run of its checks (tests change what they see);
    # tests/core/test_readyz.py checks the reuse itself.
    settings.CSVAULT_READYZ_CACHE_SECONDS = 0


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


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """JSON lines logged so far in the test, through csvault's own filter and formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
