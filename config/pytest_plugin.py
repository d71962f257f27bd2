"""pytest plugin (``-p config.pytest_plugin``, pyproject.toml): a private place for each
test session, then the data dir prepared.

pytest-django imports the settings while pytest loads the initial conftests, before
any conftest.py runs; this hook wraps that step, so it runs first. Before the settings
load it gives the session

- its own data dir (a new temporary folder: SQLite database, files, filesystem broker,
  file cache, metrics; removed at the end), whatever ``CSVAULT_DATA_DIR`` says;
- its own Redis DB numbers: ``CELERY_BROKER_URL`` and ``CACHE_URL`` keep their server
  but get a DB claimed for this session from :data:`TEST_REDIS_DBS` (claims are keys
  in DB 0 that expire, so a crashed session's claim frees itself);
- with ``CSVAULT_TEST_STORAGE=s3``, its own S3 server (moto's, on a free port) and
  bucket, named by ``STORAGE_URL`` and ``AWS_*`` for the session and its workers;

tests/conftest.py gives it its own PostgreSQL database name and Celery queue. Two test
sessions, or a session and ``make run``, can then share a machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Generator
from urllib.parse import urlsplit, urlunsplit

import pytest

from config import bootstrap

#: Redis DB numbers test sessions take turns on (0 and 1 are ``make run``'s defaults,
#: 2 and 3 ``make bench``'s; 13-15 are left for ad hoc use).
TEST_REDIS_DBS = range(4, 13)
CLAIM_KEY = "csvault-test:redis-db:{}"
CLAIM_SECONDS = 6 * 3600

#: This session's tag: names its data dir, Redis claims and PostgreSQL database.
SESSION_TAG = uuid.uuid4().hex[:8]

_claims: list[tuple[str, int]] = []
_data_dir: str | None = None
_s3: MotoServer | None = None


class MotoServer:
    """moto's S3 server (a real HTTP endpoint) in a subprocess on a free port."""

    def __init__(self, log_path: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto's S3 server exited at start (log: {log_path})")
            try:
                urllib.request.urlopen(self.url, timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto's S3 server did not answer in 30 s (log: {log_path})")

    def client(self) -> object:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _start_s3(data_dir: str) -> None:
    """An S3 server and a bucket for this session, named by STORAGE_URL and AWS_*."""
    global _s3
    _s3 = MotoServer(os.path.join(data_dir, "moto.log"))
    bucket = f"csvault-test-{SESSION_TAG}"
    _s3.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    os.environ.update(
        STORAGE_URL=f"s3://{bucket}/files",
        AWS_S3_ENDPOINT_URL=_s3.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_S3_REGION_NAME="us-east-1",
    )


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests() -> Generator[None, None, None]:
    global _data_dir
    _data_dir = tempfile.mkdtemp(prefix=f"csvault-test-{SESSION_TAG}-")
    os.environ["CSVAULT_DATA_DIR"] = _data_dir
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the data dir's own, set by prepare()
    for name in ("CELERY_BROKER_URL", "CACHE_URL"):
        url = os.environ.get(name, "")
        if url.startswith("redis://"):
            os.environ[name] = _claim_redis_db(url)
    if os.environ.get("CSVAULT_TEST_STORAGE") == "s3":
        _start_s3(_data_dir)
    else:
        os.environ.pop("STORAGE_URL", None)  # the data dir's own files/
    bootstrap.prepare()
    return (yield)


def pytest_unconfigure() -> None:
    import redis

    for base_url, number in _claims:
        try:
            client = redis.Redis.from_url(base_url, socket_connect_timeout=2)
            if client.get(CLAIM_KEY.format(number)) == SESSION_TAG.encode():
                client.delete(CLAIM_KEY.format(number))
        except redis.RedisError:
            pass  # the claim expires by itself
    if _s3 is not None:
        _s3.stop()
    if _data_dir:
        shutil.rmtree(_data_dir, ignore_errors=True)


def _with_db(url: str, number: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{number}"))


def _claim_redis_db(url: str) -> str:
    """``url`` with a Redis DB number no other test session holds, emptied for this one.

    An unreachable server leaves ``url`` as it is: the service check in tests/conftest.py
    names the problem.
    """
    import redis

    base_url = _with_db(url, 0)
    try:
        client = redis.Redis.from_url(base_url, socket_connect_timeout=2)
        for number in TEST_REDIS_DBS:
            if (base_url, number) in _claims:
                continue
            if client.set(CLAIM_KEY.format(number), SESSION_TAG, nx=True, ex=CLAIM_SECONDS):
                _claims.append((base_url, number))
                redis.Redis.from_url(_with_db(url, number)).flushdb()
                return _with_db(url, number)
    except redis.RedisError:
        return url
    raise pytest.UsageError(
        f"every Redis DB in {TEST_REDIS_DBS.start}-{TEST_REDIS_DBS.stop - 1} is claimed by "
        f"another test session (keys {CLAIM_KEY.format('*')} in DB 0 of {base_url})"
    )
