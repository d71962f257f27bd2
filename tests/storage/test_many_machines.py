"""Two hosts that share no disk: the web process and the worker (with beat) each have
their own data dir and meet only in PostgreSQL, Redis and the S3 bucket."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connection

from csvault.datasets.models import Dataset
from tests.csvdata import HEADER, to_csv, tricky_rows
from tests.helpers import stored_names, wait_for_status, web_process
from tests.storage.conftest import s3_env

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis"),
        reason="hosts that share no disk need PostgreSQL and Redis",
    ),
]

ROWS = 300_000


def host_env(data_dir: Path, server: Any, bucket: str) -> dict[str, str]:
    from tests.helpers import _worker_database_url

    return {
        "DATABASE_URL": _worker_database_url(),
        "CSVAULT_DATA_DIR": str(data_dir),
        "PROMETHEUS_MULTIPROC_DIR": str(data_dir / "metrics"),
        "CSVAULT_MASTER_KEYS": settings.CSVAULT_MASTER_KEYS,
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        **s3_env(server, bucket),
    }


@pytest.fixture
def web_host(transactional_db: None, tmp_path: Path, s3_server: Any, bucket: str) -> Iterator[str]:
    """gunicorn on its own data dir; yields its URL."""
    env = host_env(tmp_path / "web-host", s3_server, bucket)
    with web_process(env, tmp_path / "web.log") as url:
        yield url


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_a_file_uploaded_on_one_host_is_ingested_on_another_read_back_exported_and_purged(
    web_host: str, worker_factory: Any, user: Any, s3: Any, s3_server: Any, bucket: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    worker = worker_factory()
    worker.start(
        beat=True,
        extra_env={
            **host_env(tmp_path / "worker-host", s3_server, bucket),
            "CSVAULT_STALL_SECONDS": "5",
            "CSVAULT_REAP_EVERY_SECONDS": "1",
        },
    )
    rows = tricky_rows(ROWS)
    data = to_csv(rows)
    auth = {"Authorization": f"Token {user.auth_token.key}"}

    response = requests.post(
        f"{web_host}/api/datasets/", headers=auth, files={"file": ("big.csv", data)}, timeout=120
    )
    assert response.status_code == 201, response.text
    dataset_id = response.json()["id"]
    dataset = wait_for_status(dataset_id, {"completed", "failed", "rejected"}, timeout=300)
    assert dataset.status == "completed", dataset.error
    assert dataset.row_count == ROWS

    # Read back through the web host, every row, and the export.
    got: list[list[str]] = []
    url: str | None = f"{web_host}/api/datasets/{dataset_id}/rows/?limit=1000"
    while url:
        page = requests.get(url, headers=auth, timeout=60).json()
        got.extend(r["values"] for r in page["results"])
        url = page["next"]
    assert got == rows
    export = requests.get(
        f"{web_host}/api/datasets/{dataset_id}/export/?format=csv", headers=auth, timeout=120
    )
    assert export.status_code == 200
    exported = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert exported[0] == HEADER
    assert [row[0] for row in exported[1:]] == [row[0] for row in rows]

    # The file is in the bucket, as ciphertext, and on neither host's disk.
    key = Dataset.objects.get(id=dataset_id).storage_key
    assert stored_names() == {key}
    for host in ("web-host", "worker-host"):
        assert (tmp_path / host / "metrics").is_dir(), host  # the host did use its own dir
        leftovers = [p for p in files_under(tmp_path / host) if dataset_id in p.name]
        assert leftovers == [], host
        assert not [p for p in files_under(tmp_path / host) if p.suffix == ".csvf"], host
    body = s3.client.get_object(Bucket=bucket, Key=f"files/{key}")["Body"].read()
    assert b"name 12345," in data
    assert b"name 12345," not in body

    # Deleting it empties the bucket of its object within a minute (the worker purges).
    assert (
        requests.delete(f"{web_host}/api/datasets/{dataset_id}/", headers=auth).status_code == 204
    )
    deadline = time.monotonic() + 60
    while stored_names() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stored_names() == set()
    assert not Dataset.objects.filter(id=dataset_id).exists()
