"""Cached reads for the hot endpoints: detail, progress and the owner's list.

On a hit these answer without touching the database (see csvault/datasets/cache.py
for the keys, what is stored and how writes clear them); on a miss they read
through the selectors, which also enforce ownership, and fill the cache.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.http import Http404

from csvault.datasets.cache import cache_get, cache_set, open_columns, open_sealed, seal_columns
from csvault.datasets.models import FINAL_STATUSES, Dataset
from csvault.datasets.selectors import (
    RowPage,
    dataset_get,
    dataset_progress,
    dataset_row_page,
    ensure_completed,
    row_page,
)
from csvault.datasets.serializers import DatasetSerializer


def detail_payload(dataset: Dataset) -> dict[str, Any]:
    """The detail as cached: header names sealed (ciphertext + wrapped key), never plain."""
    data = dict(DatasetSerializer(dataset, context={"sealed_columns": True}).data)
    data["columns"] = seal_columns(dataset)
    return data


def open_payload(payload: dict[str, Any]) -> dict[str, Any]:
    data = dict(payload)
    data["columns"] = open_columns(data["id"], payload["columns"])
    return data


def _read_through(
    owner: User, dataset_id: uuid.UUID, kind: str, build: Callable[[Dataset], dict[str, Any]]
) -> dict[str, Any]:
    """The cached ``kind`` of the caller's dataset; on a miss, built from the database."""
    value, generation = cache_get(owner.pk, dataset_id, kind)
    if value is None:
        value = build(dataset_get(owner=owner, dataset_id=dataset_id))
        cache_set(owner.pk, dataset_id, kind, value, generation)
    return value


def dataset_detail_read(*, owner: User, dataset_id: uuid.UUID) -> dict[str, Any]:
    return open_payload(_read_through(owner, dataset_id, "detail", detail_payload))


def dataset_rows_read(*, owner: User, dataset_id: uuid.UUID, after: int, limit: int) -> RowPage:
    """A page of rows: owner, status and key from the cached detail, then one query.

    The cached detail is the gate (its key carries the owner, and a write, a
    cancel or a DELETE gives the dataset a new generation, so the next read goes
    to the database and answers 404/409 as it should). A detail without a sealed
    header, or whose key is gone, falls back to the database path.
    """
    payload = _read_through(owner, dataset_id, "detail", detail_payload)
    ensure_completed(payload["status"])
    opened = open_sealed(payload["id"], payload["columns"])
    if opened is None:
        return dataset_row_page(
            dataset=dataset_get(owner=owner, dataset_id=dataset_id), after=after, limit=limit
        )
    cipher, columns = opened
    return row_page(
        owner_id=owner.pk,
        dataset_id=payload["id"],
        cipher=cipher,
        columns=columns,
        after=after,
        limit=limit,
    )


def dataset_progress_read(*, owner: User, dataset_id: uuid.UUID) -> dict[str, Any]:
    return _read_through(owner, dataset_id, "progress", lambda d: dataset_progress(dataset=d))


def progress_events(*, owner: User, dataset_id: uuid.UUID) -> Iterator[str]:
    """Server-Sent Events: ``progress`` on each change, ``end`` once final, then stop."""
    interval = settings.CSVAULT_SSE_INTERVAL_SECONDS
    deadline = time.monotonic() + settings.CSVAULT_SSE_MAX_SECONDS
    last: dict[str, Any] | None = None
    last_sent = time.monotonic()
    yield "retry: 2000\n\n"
    while True:
        try:
            progress = dataset_progress_read(owner=owner, dataset_id=dataset_id)
        except Http404:
            yield _event("error", {"code": "not_found", "message": "The dataset was deleted."})
            return
        if progress != last:
            yield _event("progress", progress)
            last, last_sent = progress, time.monotonic()
        if progress["status"] in FINAL_STATUSES:
            yield _event("end", progress)
            return
        if time.monotonic() >= deadline:
            return  # the client reconnects
        if time.monotonic() - last_sent > 15:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        time.sleep(interval)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
