"""Metrics and logs of a real Celery worker process reach /metrics and its log as JSON."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from csvault.scanning import get_scanner
from tests.core.promtext import METRICS_TOKEN, Samples, parse, scrape, value
from tests.csvdata import MARKER, to_csv, tricky_rows
from tests.helpers import free_port, upload, wait_for_status

pytestmark = pytest.mark.integration


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def json_lines(text: str) -> list[dict[str, Any]]:
    """The worker log's JSON lines (Celery's start-up banner is plain text)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_a_worker_ingest_moves_the_counters_by_exactly_its_rows(
    worker_factory: Callable[[], Any], api: Any
) -> None:
    port = free_port()
    worker = worker_factory()
    worker.start(
        extra_env={
            "CSVAULT_WORKER_METRICS_PORT": str(port),
            "CSVAULT_METRICS_TOKEN": METRICS_TOKEN,
            "CSVAULT_METRICS_PUBLIC": "1",  # the token still rules when one is set
        }
    )
    client = Client()
    scanner = get_scanner().name
    before = scrape(client)
    rows = tricky_rows(4321)
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    dataset = wait_for_status(dataset_id, {"completed", "failed", "rejected"})
    assert dataset.status == "completed", dataset.error

    after: Samples = {}

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    def completed_by(task: str) -> float:
        return moved("csvault_task_results_total", task=f"csvault.{task}", result="completed")

    def ingest_task_returned() -> bool:
        nonlocal after
        after = scrape(client)
        return completed_by("ingest_dataset") + completed_by("scan_dataset") > 0

    wait_for(ingest_task_returned, "the task that ran the ingest in /metrics")

    assert moved("csvault_rows_ingested_total") == 4321
    assert moved("csvault_ingest_duration_seconds_count") == 1
    assert moved("csvault_scan_verdicts_total", verdict="clean", scanner=scanner) == 1
    # The scan handed over to an ingest task, or (clamd still deciding as the stream
    # ended) ran the ingest itself: one task counted either way.
    scan_queued = moved("csvault_task_results_total", task="csvault.scan_dataset", result="queued")
    assert (scan_queued, completed_by("ingest_dataset"), completed_by("scan_dataset")) in {
        (1, 1, 0),
        (0, 0, 1),
    }

    # The worker's own exporter serves the same multiprocess metrics, to the token only.
    url = f"http://127.0.0.1:{port}/metrics"
    for wrong in [{}, {"Authorization": "Bearer nope"}]:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, headers=wrong), timeout=5)
        assert refused.value.code == 401
    token = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    with urllib.request.urlopen(urllib.request.Request(url, headers=token), timeout=5) as response:
        exported = parse(response.read().decode())
    assert value(exported, "csvault_rows_ingested_total") == value(
        after, "csvault_rows_ingested_total"
    )

    # Its log lines are JSON and carry the task and dataset ids; no cell value is in them.
    log = worker.log.read_text()
    assert MARKER not in log
    completed = [
        line for line in json_lines(log) if line["message"].startswith(f"ingest of {dataset_id}")
    ]
    assert completed, log[-3000:]
    assert completed[-1]["dataset_id"] == dataset_id
    assert completed[-1]["task_id"]
    assert completed[-1]["level"] == "INFO"


def test_a_failed_task_is_counted_and_logged_once_with_its_traceback(
    celery_worker: Any,
) -> None:
    from csvault.pipeline.tasks import ingest_dataset

    client = Client()
    labels = {"task": "csvault.ingest_dataset", "exception": "ValueError"}
    before = value(scrape(client), "csvault_task_failures_total", **labels)
    result = ingest_dataset.delay("not-a-uuid")
    wait_for(
        lambda: value(scrape(client), "csvault_task_failures_total", **labels) == before + 1,
        "the failure in /metrics",
    )

    def tracebacks() -> list[dict[str, Any]]:
        text = celery_worker.log.read_text()
        assert text.count("Traceback (most recent call last)") == len(
            [line for line in json_lines(text) if "exc_info" in line]
        ), "a traceback outside a JSON line"
        return [line for line in json_lines(text) if "ValueError" in line.get("exc_info", "")]

    wait_for(lambda: bool(tracebacks()), "the failure's log line")
    # The worker's one pool process takes the next task only once the failed one is
    # done with, reports included: when a task queued after it has logged, so has
    # any second report of the failure.
    after = str(uuid.uuid4())
    ingest_dataset.delay(after)
    wait_for(
        lambda: f"ingest of {after} skipped" in celery_worker.log.read_text(),
        "the next task's log line",
    )
    logged = tracebacks()
    assert len(logged) == 1, logged
    assert logged[0]["level"] == "ERROR"
    assert logged[0]["task_id"] == result.id
    assert "Traceback (most recent call last)" in logged[0]["exc_info"]
