"""Server-Sent Events of a dataset's progress, read through the cached selector."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import close_old_connections
from django.http import Http404

from csvault.datasets.models import FINAL_STATUSES
from csvault.datasets.selectors import dataset_progress


def progress_events(*, owner: User, dataset_id: uuid.UUID) -> Iterator[str]:
    """Server-Sent Events: ``progress`` on each change, ``end`` once final, then stop."""
    interval = settings.CSVAULT_SSE_INTERVAL_SECONDS
    deadline = time.monotonic() + settings.CSVAULT_SSE_MAX_SECONDS
    last: dict[str, Any] | None = None
    last_sent = time.monotonic()
    yield "retry: 2000\n\n"
    while True:
        try:
            progress = dataset_progress(owner=owner, dataset_id=dataset_id)
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
        # A pooled database connection goes back to the pool between reads (a stream
        # lasts up to a minute); a persistent one stays (closed only when obsolete).
        close_old_connections()
        time.sleep(interval)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
