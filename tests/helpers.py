"""Helpers shared by the tests: fixtures live in conftest.py, plain functions and
classes here (test modules import these; nothing imports a conftest)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from csvault.csvio.reader import CsvStream

ROOT = Path(__file__).resolve().parent.parent
# Tasks queued by this test session go to a private queue that only this
# session's workers consume (a developer's running worker never steals them).
SESSION_QUEUE = f"csvault-test-{uuid.uuid4().hex[:8]}"


def all_rows(stream: CsvStream, step: int = 4096) -> list[list[str]]:
    """Every data row of an open CSV stream, read ``step`` rows at a time."""
    rows: list[list[str]] = []
    while batch := stream.read_rows(step):
        rows.extend(batch)
    return rows


@dataclass(frozen=True)
class Clamd:
    """Where a clamd under test listens."""

    url: str
    unix_url: str | None = None


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clamd_unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so clamd is required)", pytrace=False)
    pytest.skip(message)


def rates(settings: Any, **overrides: str) -> None:
    """Override some of the throttle rates (``settings`` is pytest-django's fixture)."""
    rest = dict(settings.REST_FRAMEWORK)
    rest["DEFAULT_THROTTLE_RATES"] = {**rest["DEFAULT_THROTTLE_RATES"], **overrides}
    settings.REST_FRAMEWORK = rest


# --- the API as a client uses it ----------------------------------------------


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    return client


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
    if dataset_scan(dataset_id=dataset_id, on_clean=None).status == "queued":
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


def assert_rows_exactly(dataset_id: Any, rows: list[list[str]]) -> None:
    """The dataset completed with exactly ``rows``: row numbers 1..N, values equal, once each,
    in the table and through the rows pages."""
    from csvault.datasets.models import Dataset
    from csvault.datasets.selectors import dataset_row_page

    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.status == "completed", dataset.error
    assert dataset.row_count == len(rows)
    stored = stored_rows(dataset_id)  # the table itself: blocks from row 1, no gap or overlap
    assert [n for n, _ in stored] == list(range(1, len(rows) + 1))
    assert [values for _, values in stored] == rows
    after, got = 0, []
    while True:
        page = dataset_row_page(
            owner=dataset.owner, dataset_id=dataset.id, after=after, limit=20_000
        )
        got.extend(page.rows)
        if not page.has_more:
            break
        after = page.rows[-1][0]
    assert [n for n, _ in got] == list(range(1, len(rows) + 1))
    assert [values for _, values in got] == rows


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

        ``stages`` limits it to some pipeline queues (``("scan",)``; ``"default"`` is the
        queue of the reaper and the purge); default: all queues.
        """
        from config.celery import all_queues

        queues = all_queues(self.queue)
        if stages:
            queues = [q for q in queues if _stage_of(q, self.queue) in stages]
        self.queues = queues
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
            # moto dates every multipart upload 2010: a sweep would abort live test uploads.
            "CSVAULT_UNFINISHED_UPLOAD_SECONDS": "0",
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

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole worker (parent and pool children) without waiting."""
        assert self.proc is not None, "the worker was never started"
        assert self.proc.poll() is None, "the worker is not running"
        os.killpg(self.proc.pid, sig)

    def pause(self) -> None:
        """Freeze the worker (SIGSTOP): whatever it runs stops where it is."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def log_count(self, text: str) -> int:
        """How many times ``text`` occurs in the worker's log so far."""
        return self.log.read_text(errors="replace").count(text)

    def received(self, task: str) -> int:
        """How many messages of ``task`` the worker has taken ("Task <name>[<id>] received")."""
        pattern = rf"Task {re.escape(task)}\[[^\]]+\] received"
        return len(re.findall(pattern, self.log.read_text(errors="replace")))

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 60) -> None:
        """Wait until ``text`` occurs ``count`` times in the worker's log."""
        wait_until(
            lambda: self.log_count(text) >= count,
            timeout=timeout,
            what=lambda: (
                f"{text!r} {count} times in {self.log} "
                f"(seen {self.log_count(text)}):\n{self.log.read_text(errors='replace')[-3000:]}"
            ),
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            os.killpg(self.proc.pid, signal.SIGCONT)  # a paused worker handles it too
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _stage_of(queue: str, base: str) -> str:
    return "default" if queue == base else queue.rsplit(".", 1)[-1]


def wait_until(
    condition: Callable[[], object], *, timeout: float = 60, what: str | Callable[[], str] = ""
) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"not true after {timeout} s: {described}")
        time.sleep(0.05)


def queue_length(name: str) -> int:
    """Messages waiting in the broker queue ``name`` (taken but unacknowledged ones not
    counted), on the broker the test process sends to."""
    from config.celery import app

    with app.connection_for_write() as conn:
        channel: Any = conn.default_channel  # kombu's virtual channel (Redis, filesystem)
        return int(channel._size(name))


def queue_purge(name: str) -> int:
    """Drop every message waiting in the broker queue ``name`` (a lost message)."""
    from config.celery import app

    with app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        return int(channel.queue_purge(name) or 0)


def stage_queue(stage: str) -> str:
    """The session's broker queue of a pipeline stage (``"default"``, ``"scan"``, ``"ingest"``)."""
    return SESSION_QUEUE if stage == "default" else f"{SESSION_QUEUE}.{stage}"


class RedisServer:
    """A private ``redis-server`` on a free loopback port, without persistence: a restart
    comes back empty, as a broker that lost its memory does."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        import redis

        self.starts += 1
        log = open(self.dir / f"redis-{self.starts}.log", "wb")  # noqa: SIM115
        with log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=1)

        def answers() -> bool:
            assert self.proc is not None, "redis-server was never started"
            assert self.proc.poll() is None, "redis-server exited"
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(answers, timeout=20, what=f"redis-server on port {self.port} answers")

    def stop(self) -> None:
        """Kill it (its memory, every queued and unacknowledged message, is gone)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def broker_switched(url: str) -> Iterator[None]:
    """Make the test process's Celery producer send to the (Redis) broker at ``url``.

    Celery reads ``CELERY_BROKER_URL`` from the environment before its configuration,
    so both change (and the worker processes started meanwhile inherit the variable).
    """
    from config.celery import app

    conf = app.conf
    saved = {k: conf[k] for k in ("broker_url", "broker_transport", "broker_transport_options")}
    saved_env = os.environ.get("CELERY_BROKER_URL")

    def use(values: dict[str, Any], env_url: str | None) -> None:
        if env_url is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = env_url
        conf.update(values)
        # The connection and producer pools were made for the old URL; drop them.
        celery_app: Any = app
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    redis_broker = {
        "broker_transport": None,
        "broker_transport_options": {"visibility_timeout": 3600},
    }
    use({"broker_url": url, **redis_broker}, url)
    try:
        with app.connection_for_write() as conn:
            assert f":{conn.port}/" in url, f"the producer still sends to {conn.as_uri()}"
        yield
    finally:
        use(saved, saved_env)


def wait_for_status(dataset_id: Any, statuses: set[str], timeout: float = 120) -> Any:
    from csvault.datasets.models import Dataset

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dataset = Dataset.objects.get(id=dataset_id)
        if dataset.status in statuses:
            return dataset
        time.sleep(0.2)
    raise AssertionError(f"dataset {dataset_id} still {dataset.status} after {timeout} s")


# --- the dataset store ------------------------------------------------------------------


def stored_names() -> set[str]:
    """Every file in the dataset store (names relative to it), and on S3 every unfinished
    multipart upload too (as ``<key> (unfinished upload)``)."""
    from csvault.core.storage import LocalStorage, dataset_storage

    store = dataset_storage()
    if isinstance(store, LocalStorage):
        root = Path(store.location)
        if not root.exists():
            root.mkdir(parents=True)  # empty, and where the store writes its files
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    prefix = f"{store.location}/" if store.location else ""
    names = set()
    for page in store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket_name, Prefix=prefix
    ):
        names |= {item["Key"].removeprefix(prefix) for item in page.get("Contents", [])}
    unfinished = store.client.list_multipart_uploads(Bucket=store.bucket_name, Prefix=prefix)
    names |= {
        f"{u['Key'].removeprefix(prefix)} (unfinished upload)"
        for u in unfinished.get("Uploads", [])
    }
    return names


@contextmanager
def web_process(extra_env: dict[str, str], log: Path) -> Iterator[str]:
    """gunicorn (config.wsgi, one worker) against the test database, with ``extra_env``
    (e.g. its own CSVAULT_DATA_DIR: a host of its own); yields its URL."""
    import requests

    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _worker_database_url(),
        "CSVAULT_MASTER_KEYS": settings.CSVAULT_MASTER_KEYS,
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "WEB_ACCESS_LOG": "",
        **extra_env,
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "scripts/gunicorn.conf.py"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: proc.poll() is not None or _answers(requests, f"{url}/healthz"),
            what="the web process to answer",
            timeout=60,
        )
        if proc.poll() is not None:
            raise RuntimeError(f"the web process exited:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _answers(requests: Any, url: str) -> bool:
    try:
        return bool(requests.get(url, timeout=2).status_code == 200)
    except (requests.ConnectionError, requests.Timeout):
        return False


class VerdictHold:
    """A TCP proxy in front of a real clamd that holds clamd's answers until released.

    Streams go through as they come; each answer waits for :meth:`release`, then goes to
    the client, or, for those held at ``release(drop=True)``, the connection is closed
    without it (a clamd that died before answering). ``held`` counts the answers waiting.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream: tuple[int, Any] = (
            (socket.AF_UNIX, parts.path)
            if parts.scheme == "unix"
            else (socket.AF_INET, (parts.hostname, parts.port or 3310))
        )
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self._released = threading.Event()
        self._dropping = 0
        self._lock = threading.Lock()
        self.held = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self, *, drop: bool = False) -> None:
        with self._lock:
            self._dropping = self.held if drop else 0
        self._released.set()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        family, address = self._upstream
        with client, socket.socket(family, socket.SOCK_STREAM) as up:
            up.connect(address)
            threading.Thread(target=_pump, args=(client, up), daemon=True).start()
            answer = bytearray()
            while b"\0" not in answer and (data := up.recv(4096)):
                answer += data
            with self._lock:
                self.held += 1
            self._released.wait()
            with self._lock:
                self.held -= 1
                drop, self._dropping = self._dropping > 0, max(0, self._dropping - 1)
            if not drop:
                client.sendall(answer)
            # Closing alone sends nothing while the pump still reads from the socket.
            with contextlib.suppress(OSError):  # the client may be gone already
                client.shutdown(socket.SHUT_RDWR)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def terminate_other_connections() -> None:
    """Cut every other connection to the test database (PostgreSQL): the workers' own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchall(), "no worker connection to terminate"
