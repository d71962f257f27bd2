"""Shared fixtures: users with tokens, an upload helper, and a real Celery worker process."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent.parent
# Tasks queued by this test session go to a private queue that only this
# session's workers consume (a developer's running worker never steals them).
SESSION_QUEUE = f"csvault-test-{uuid.uuid4().hex[:8]}"


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


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    return client


@pytest.fixture
def api(user: Any) -> APIClient:
    return client_for(user)


@pytest.fixture
def other_api(other_user: Any) -> APIClient:
    return client_for(other_user)


def upload(client: APIClient, content: bytes, filename: str = "data.csv", **fields: Any) -> Any:
    """POST a file to the upload endpoint as multipart, like a user agent would."""
    fh = io.BytesIO(content)
    fh.name = filename
    return client.post("/api/datasets/", {"file": fh, **fields}, format="multipart")


def ingest(response: Any) -> Any:
    """Scan and ingest an uploaded dataset in-process (the services, no Celery); returns its id.

    The scan uses the configured scanner (clamd in CI's PostgreSQL run, the built-in
    matcher in embedded mode); the ingest runs only if the verdict was clean.
    """
    from csvault.pipeline.ingest import dataset_ingest
    from csvault.pipeline.scan import dataset_scan

    assert response.status_code == 201, response.content
    dataset_id = response.json()["id"]
    if dataset_scan(dataset_id=dataset_id).status == "queued":
        dataset_ingest(dataset_id=dataset_id)
    return dataset_id


def read_all_rows(client: APIClient, dataset_id: Any, limit: int = 1000) -> tuple[Any, list[Any]]:
    """Follow the rows endpoint's ``next`` links; returns (columns, results)."""
    rows, url = [], f"/api/datasets/{dataset_id}/rows/?limit={limit}"
    while url:
        body = client.get(url).json()
        rows.extend(body["results"])
        url = body["next"]
    return body["columns"], rows


def stored_rows(dataset_id: Any) -> list[tuple[int, list[str]]]:
    """Every row stored for a dataset as ``(row_number, values)``, straight from the
    table: each block decrypted, and the blocks checked to follow each other from row 1
    without gap or overlap (so every row is there exactly once)."""
    from csvault.datasets.keys import dataset_row_cipher
    from csvault.datasets.models import Dataset, ProcessedData

    cipher = dataset_row_cipher(Dataset.objects.get(id=dataset_id))
    blocks = ProcessedData.objects.filter(dataset_id=dataset_id).order_by("row_number")
    rows: list[tuple[int, list[str]]] = []
    for start, blob in blocks.values_list("row_number", "data"):
        assert start == len(rows) + 1, f"a block starts at row {start}, after {len(rows)} rows"
        rows.extend(enumerate(cipher.decrypt_block(start, blob), start=start))
    return rows


def block_start(dataset_id: Any, row_number: int) -> int:
    """The first row of the stored block that holds ``row_number``."""
    from csvault.datasets.models import ProcessedData

    start = (
        ProcessedData.objects.filter(dataset_id=dataset_id, row_number__lte=row_number)
        .order_by("-row_number")
        .values_list("row_number", flat=True)
        .first()
    )
    assert start is not None, f"no stored block holds row {row_number}"
    return start


# --- a real Celery worker process --------------------------------------------


def _worker_database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"


class Worker:
    """A ``celery worker`` subprocess on a private queue, against the test database."""

    def __init__(self, queue: str, log_dir: Path) -> None:
        self.queue = queue
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(
        self,
        *,
        concurrency: int = 1,
        beat: bool = False,
        extra_env: dict[str, str] | None = None,
        stages: tuple[str, ...] | None = None,
    ) -> None:
        """Start the worker and wait until it consumes; ``beat`` embeds the reaper schedule.

        ``stages`` limits it to some pipeline queues (``("scan",)``); default: all queues.
        """
        from config.celery import all_queues

        queues = all_queues(self.queue)
        self.queues = [q for q in queues if q.rsplit(".", 1)[-1] in stages] if stages else queues
        self.starts += 1
        name = f"{self.queue}-{id(self):x}-{self.starts}"
        self.log = self.log_dir / f"worker-{name}.log"
        env = {
            **os.environ,
            "DATABASE_URL": _worker_database_url(),
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "CSVAULT_DATA_DIR": str(settings.DATA_DIR),
            "CSVAULT_MASTER_KEYS": settings.CSVAULT_MASTER_KEYS,
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            **(extra_env or {}),
        }
        cmd = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "--loglevel", "INFO", "--concurrency", str(concurrency), "-Q", ",".join(self.queues),
            "--hostname", f"{name}@%h", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        if beat:
            cmd += ["--beat", "--schedule", str(self.log_dir / f"beat-{name}")]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited at start:\n{self.log.read_text()[-4000:]}")
            if b" ready." in self.log.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in 60 s:\n{self.log.read_text()[-4000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole worker (parent and pool children)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


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


def wait_for_status(dataset_id: Any, statuses: set[str], timeout: float = 120) -> Any:
    from csvault.datasets.models import Dataset

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dataset = Dataset.objects.get(id=dataset_id)
        if dataset.status in statuses:
            return dataset
        time.sleep(0.2)
    raise AssertionError(f"dataset {dataset_id} still {dataset.status} after {timeout} s")
