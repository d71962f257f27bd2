"""Server-Sent Events of a dataset's progress."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from tests.csvdata import to_csv, tricky_rows
from tests.helpers import ingest, upload

pytestmark = pytest.mark.django_db(transaction=True)


def parse(stream: Any) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of an SSE body; comments and the retry line skipped."""
    events = []
    for block in b"".join(stream).decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_a_finished_dataset_streams_its_progress_and_the_end(api):
    dataset_id = ingest(upload(api, to_csv(tricky_rows(10))))
    response = api.get(f"/api/datasets/{dataset_id}/events/", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    events = parse(response.streaming_content)
    assert [name for name, _ in events] == ["progress", "end"]
    assert events[-1][1]["status"] == "completed"
    assert events[-1][1]["percent"] == 100.0


def test_the_stream_follows_an_ingest_until_it_is_final(api, settings):
    settings.CSVAULT_SSE_INTERVAL_SECONDS = 0.05
    response = upload(api, to_csv(tricky_rows(50)))
    dataset_id = response.json()["id"]
    stream = api.get(f"/api/datasets/{dataset_id}/events/").streaming_content
    timer = threading.Timer(0.5, ingest, args=(response,))
    timer.start()
    started = time.monotonic()
    events = parse(stream)
    timer.join()
    statuses = [data["status"] for _, data in events]
    assert statuses[0] == "pending"
    assert statuses[-1] == "completed"
    assert events[-1][0] == "end"
    assert time.monotonic() - started < 30


def test_a_stream_ends_after_its_maximum_and_the_client_reconnects(api, settings):
    settings.CSVAULT_SSE_MAX_SECONDS = 0.3
    dataset_id = upload(api, b"a\n1\n").json()["id"]
    body = b"".join(api.get(f"/api/datasets/{dataset_id}/events/").streaming_content)
    assert body.startswith(b"retry: 2000\n\n")
    assert [name for name, _ in parse([body])] == ["progress"]


def test_another_users_events_answer_404(api, other_api):
    dataset_id = upload(api, b"a\n1\n").json()["id"]
    response = other_api.get(f"/api/datasets/{dataset_id}/events/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
