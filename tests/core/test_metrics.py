"""/metrics through the HTTP client: format, protection, csvault's own metrics."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from django.test import Client

from csvault.scanning import get_scanner
from tests.core.promtext import names, scrape, value
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import free_port, ingest, upload

pytestmark = pytest.mark.django_db


# Another csvault process on the host: it counts uploads in the shared metric files.
OTHER_PROCESS = """
import sys
from prometheus_client import Counter, values
assert values.ValueClass._multiprocess, "not in multiprocess mode"
Counter("csvault_uploads", "Datasets uploaded.").inc(int(sys.argv[1]))
"""


def test_metrics_are_shared_between_processes_through_files(settings: Any) -> None:
    client = Client()
    before = value(scrape(client), "csvault_uploads_total")
    done = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, "7"],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": settings.PROMETHEUS_MULTIPROC_DIR},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert value(scrape(client), "csvault_uploads_total") == before + 7


def test_it_serves_the_prometheus_text_format_with_http_metrics() -> None:
    client = Client()
    client.get("/healthz")
    samples = scrape(client)
    assert "django_http_requests_latency_seconds_by_view_method_bucket" in names(samples)
    assert (
        value(
            samples,
            "django_http_responses_total_by_status_view_method_total",
            method="GET",
            status="200",
            view="healthz",
        )
        >= 1
    )


def test_it_counts_uploads_bytes_verdicts_and_rows(api: Any) -> None:
    client = Client()
    before = scrape(client)
    content = to_csv(tricky_rows(321))
    dataset_id = ingest(upload(api, content))
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("csvault_uploads_total") == 1
    assert moved("csvault_upload_bytes_total") == len(content)
    assert moved("csvault_scan_verdicts_total", verdict="clean", scanner=get_scanner().name) == 1
    assert moved("csvault_rows_ingested_total") == 321
    assert moved("csvault_ingest_duration_seconds_count") == 1
    assert value(after, "csvault_datasets", status="completed") >= 1
    assert api.get(f"/api/datasets/{dataset_id}/").json()["status"] == "completed"


def test_it_reports_datasets_by_status_at_scrape_time(api: Any) -> None:
    client = Client()
    before = scrape(client)
    upload(api, to_csv(tricky_rows(3)))  # stored, scan not run: pending
    after = scrape(client)
    assert value(after, "csvault_datasets", status="pending") == (
        value(before, "csvault_datasets", status="pending") + 1
    )
    assert value(after, "csvault_datasets_oldest_activity_age_seconds", status="pending") >= 0
    assert value(after, "csvault_scrape_errors", part="datasets") == 0


def test_it_reports_queue_depth_per_queue(settings: Any) -> None:
    from config.celery import all_queues, app
    from csvault.pipeline.tasks import ingest_dataset

    # A queue family no worker consumes, so the message stays where it was put.
    base = f"csvault-depth-{uuid.uuid4().hex[:8]}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = base
    try:
        ingest_dataset.delay(str(uuid.uuid4()))
        samples = scrape(Client())
        assert value(samples, "csvault_queue_depth", queue=f"{base}.ingest") == 1
        assert value(samples, "csvault_queue_depth", queue=f"{base}.scan") == 0
        assert ("csvault_queue_depth", frozenset({("queue", base)})) in samples
        assert value(samples, "csvault_scrape_errors", part="queues") == 0
    finally:
        with app.connection_for_write() as conn:
            for queue in all_queues(base):
                # A queue never declared has nothing to purge.
                with contextlib.suppress(Exception):
                    conn.default_channel.queue_purge(queue)  # type: ignore[attr-defined]
        app.conf.task_default_queue = previous


def test_scanner_up_follows_the_scanner(settings: Any) -> None:
    scanner = get_scanner()
    up = scrape(Client())
    assert (
        value(up, "csvault_scanner_up", scanner=scanner.name, minimal=str(scanner.minimal).lower())
        == 1
    )
    settings.CLAMD_URL = f"tcp://127.0.0.1:{free_port()}"
    down = scrape(Client())
    assert value(down, "csvault_scanner_up", scanner="clamd", minimal="false") == 0
    assert ("csvault_scanner_up", frozenset({("scanner", "clamd"), ("minimal", "false")})) in down


def test_a_broken_part_does_not_hide_the_rest(settings: Any) -> None:
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    samples = scrape(Client())
    assert value(samples, "csvault_scrape_errors", part="queues") == 1
    assert "csvault_datasets" in names(samples)
    assert "csvault_rows_ingested_total" in names(samples)


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", "Token the-metrics-token", "Bearer", "bearer the-metrics-tok"],
)
def test_a_metrics_token_keeps_others_out(settings: Any, header: str | None) -> None:
    settings.CSVAULT_METRICS_TOKEN = "the-metrics-token"
    headers = {"Authorization": header} if header is not None else {}
    response = Client().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert b"csvault_" not in response.content


def test_the_right_token_opens_metrics(settings: Any) -> None:
    settings.CSVAULT_METRICS_TOKEN = "the-metrics-token"
    client = Client(HTTP_AUTHORIZATION="Bearer the-metrics-token")
    samples = scrape(client)
    assert "csvault_uploads_total" in names(samples)


def test_metrics_reset_removes_only_metric_files(settings: Any, tmp_path: Any) -> None:
    from django.core.management import call_command

    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    (tmp_path / "counter_123.db").write_bytes(b"x")
    (tmp_path / "histogram_456.db").write_bytes(b"x")
    (tmp_path / "keep.txt").write_text("not a metric file")
    out = io.StringIO()
    call_command("metrics_reset", stdout=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert "removed 2 metric files" in out.getvalue()


def test_production_without_a_token_keeps_metrics_closed_unless_made_public(
    settings: Any,
) -> None:
    settings.CSVAULT_METRICS_TOKEN = ""
    settings.CSVAULT_METRICS_PUBLIC = False
    closed = Client().get("/metrics")
    assert closed.status_code == 401
    assert b"CSVAULT_METRICS_PUBLIC" in closed.content
    assert b"csvault_" not in closed.content
    settings.CSVAULT_METRICS_PUBLIC = True
    assert Client().get("/metrics").status_code == 200


def test_the_default_is_closed_in_production_and_open_in_embedded_mode() -> None:
    code = (
        "from config import bootstrap; bootstrap.prepare(); from django.conf import settings; "
        "print(settings.CSVAULT_METRICS_PUBLIC)"
    )
    production = {**os.environ, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"}
    production.setdefault("DJANGO_SECRET_KEY", "x" * 50)
    production.setdefault("CSVAULT_MASTER_KEYS", "k:" + "A" * 43 + "=")
    production.pop("CSVAULT_METRICS_PUBLIC", None)
    embedded = {k: v for k, v in production.items() if k != "DATABASE_URL"}
    for env, expected in ((production, "False"), (embedded, "True")):
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
        )
        assert done.stdout.strip().splitlines()[-1] == expected, done.stderr
