"""Server-Sent Events of a dataset's progress."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.scan import dataset_scan
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import ingest, upload

pytestmark = pytest.mark.django_db(transaction=True)


def events_of(stream: Iterable[bytes]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of an SSE body as they arrive; comments and the retry line skipped.

    Reads no further than the event it yields, so a test can act between two events.
    """
    buffer = b""
    for chunk in stream:
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            lines = block.decode().splitlines()
            fields = dict(line.split(": ", 1) for line in lines if ": " in line)
            if "event" in fields:
                yield fields["event"], json.loads(fields["data"])
    assert not buffer.strip(), f"an unterminated event at the end: {buffer!r}"


def parse(stream: Iterable[bytes]) -> list[tuple[str, dict[str, Any]]]:
    return list(events_of(stream))


def test_a_finished_dataset_streams_its_progress_and_the_end(api):
    dataset_id = ingest(upload(api, to_csv(tricky_rows(10))))
    response = api.get(f"/api/datasets/{dataset_id}/events/", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-store"
    events = parse(response.streaming_content)
    assert [name for name, _ in events] == ["progress", "end"]
    assert events[-1][1]["status"] == "completed"
    assert events[-1][1]["percent"] == 100.0


def test_the_stream_follows_each_change_until_the_dataset_is_final(api, settings):
    settings.CSVAULT_SSE_INTERVAL_SECONDS = 0.01
    settings.CSVAULT_SSE_MAX_SECONDS = 10  # bounds the test if the stream missed a change
    dataset_id = upload(api, to_csv(tricky_rows(50))).json()["id"]
    events = events_of(api.get(f"/api/datasets/{dataset_id}/events/").streaming_content)

    # The stream is read one event at a time; the pipeline moves on between two reads.
    name, first = next(events)
    assert (name, first["status"]) == ("progress", "pending")
    assert dataset_scan(dataset_id=dataset_id, on_clean=None).status == "queued"
    name, scanned = next(events)
    assert (name, scanned["status"]) == ("progress", "queued")
    assert dataset_ingest(dataset_id=dataset_id).status == "completed"
    rest = list(events)
    assert [(name, data["status"]) for name, data in rest] == [
        ("progress", "completed"),
        ("end", "completed"),
    ]
    assert rest[-1][1]["rows_processed"] == 50


def test_a_dataset_deleted_mid_stream_ends_it_with_an_error_event(api, settings):
    settings.CSVAULT_SSE_INTERVAL_SECONDS = 0.01
    settings.CSVAULT_SSE_MAX_SECONDS = 10  # bounds the test if the stream missed the delete
    dataset_id = upload(api, b"a\n1\n").json()["id"]
    response = api.get(f"/api/datasets/{dataset_id}/events/")
    assert response.status_code == 200
    events = events_of(response.streaming_content)
    name, first = next(events)
    assert (name, first["status"]) == ("progress", "pending")

    assert api.delete(f"/api/datasets/{dataset_id}/").status_code == 204
    rest = list(events)  # the stream ends by itself, without raising
    assert rest == [("error", {"code": "not_found", "message": "The dataset was deleted."})]


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


@pytest.mark.parametrize("credentials", [None, "Token not-a-token"])
def test_an_anonymous_caller_gets_401_and_no_stream(api, credentials):
    dataset_id = upload(api, b"a\n1\n").json()["id"]
    client = APIClient()
    if credentials:
        client.credentials(HTTP_AUTHORIZATION=credentials)
    response = client.get(f"/api/datasets/{dataset_id}/events/", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 401
    assert not response.streaming
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_authenticated"
    assert "WWW-Authenticate" in response
