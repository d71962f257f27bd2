"""Selectors that read datasets; every one is scoped to the owner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from csvault.core.errors import NotReady
from csvault.datasets.keys import dataset_columns, dataset_row_cipher
from csvault.datasets.models import Dataset, DatasetStatus, ProcessedData

ROWS_DEFAULT_LIMIT = 100
ROWS_MAX_LIMIT = 1000


def dataset_list(*, owner: User) -> QuerySet[Dataset]:
    return Dataset.objects.filter(owner=owner).defer("wrapped_key")


def dataset_get(*, owner: User, dataset_id: Any) -> Dataset:
    """The caller's dataset; 404 for an absent one and for another user's alike."""
    try:
        return Dataset.objects.get(id=dataset_id, owner=owner)
    except (Dataset.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404 from exc


def dataset_progress(*, dataset: Dataset) -> dict[str, Any]:
    """Progress computed from the committed checkpoint (never goes backwards)."""
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


@dataclass(frozen=True)
class RowPage:
    columns: list[str]
    rows: list[tuple[int, list[str]]]
    has_more: bool


def dataset_row_page(*, dataset: Dataset, after: int, limit: int) -> RowPage:
    """Rows numbered after ``after``, decrypted, in file order (keyset pagination)."""
    if dataset.status != DatasetStatus.COMPLETED:
        raise NotReady(
            f"The dataset is {dataset.status}; rows can be read once it is completed.",
            status=dataset.status,
        )
    cipher = dataset_row_cipher(dataset)
    page = list(
        ProcessedData.objects.filter(dataset_id=dataset.id, row_number__gt=after)
        .order_by("row_number")
        .values_list("row_number", "data")[: limit + 1]
    )
    has_more = len(page) > limit
    rows = [(n, cipher.decrypt(n, bytes(blob))) for n, blob in page[:limit]]
    return RowPage(columns=dataset_columns(dataset, cipher), rows=rows, has_more=has_more)
