"""A dataset's progress, computed from its committed checkpoint (never goes backwards).

The polling endpoint and the Server-Sent Events read it through the cache
(selectors.py); the values come from the columns the ingest commits with every
batch (csvault/pipeline/ingest.py).
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from csvault.datasets.models import Dataset, DatasetStatus


def progress_from_checkpoint(*, dataset: Dataset) -> dict[str, Any]:
    """``{status, rows_processed, bytes_processed, bytes_total, percent, rows_per_second,
    eta_seconds}`` of one dataset."""
    total = dataset.size
    done = dataset.size if dataset.status == DatasetStatus.COMPLETED else dataset.bytes_processed
    percent = round(100.0 * done / total, 2) if total else 100.0
    rows_per_second: float | None = None
    eta_seconds: float | None = None
    if dataset.started_at and dataset.rows_processed:
        end = dataset.finished_at or dataset.heartbeat_at or timezone.now()
        elapsed = (end - dataset.started_at).total_seconds()
        if elapsed > 0:
            rows_per_second = round(dataset.rows_processed / elapsed, 1)
            if dataset.status == DatasetStatus.PROCESSING and done:
                eta_seconds = round(elapsed * (total - done) / done, 1)
    if dataset.is_final:
        eta_seconds = 0.0 if dataset.status == DatasetStatus.COMPLETED else None
    return {
        "status": dataset.status,
        "rows_processed": dataset.rows_processed,
        "bytes_processed": done,
        "bytes_total": total,
        "percent": percent,
        "rows_per_second": rows_per_second,
        "eta_seconds": eta_seconds,
    }
