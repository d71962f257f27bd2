"""Selectors that read datasets; every one is scoped to the owner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from csvault.core.errors import NotReady
from csvault.crypto.rows import RowCipher
from csvault.datasets.keys import dataset_columns, dataset_row_cipher
from csvault.datasets.models import Dataset, DatasetStatus, ProcessedData
from csvault.datasets.rowstore import rows_read

ROWS_DEFAULT_LIMIT = 100
ROWS_MAX_LIMIT = 1000


class DatasetNotFound(Http404):
    """404 for an absent dataset and for another user's alike.

    ``foreign`` is True when the dataset exists but belongs to someone else, so
    the denied access can be audited; the client never sees the difference.
    """

    def __init__(self, dataset_id: Any = None, *, foreign: bool = False) -> None:
        super().__init__("Not found.")
        self.dataset_id = dataset_id
        self.foreign = foreign


def visible_datasets() -> QuerySet[Dataset]:
    """Datasets not deleted (a deleted one is unreadable at once, purged later)."""
    return Dataset.objects.filter(deleted_at__isnull=True)


def dataset_list(*, owner: User) -> QuerySet[Dataset]:
    return visible_datasets().filter(owner=owner).defer("wrapped_key")


def dataset_get(*, owner: User, dataset_id: Any) -> Dataset:
    """The caller's dataset; 404 for an absent one and for another user's alike."""
    try:
        return visible_datasets().get(id=dataset_id, owner=owner)
    except (ValueError, TypeError, ValidationError) as exc:
        raise DatasetNotFound() from exc
    except Dataset.DoesNotExist as exc:
        foreign = visible_datasets().filter(id=dataset_id).exclude(owner=owner).exists()
        raise DatasetNotFound(dataset_id, foreign=foreign) from exc


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


def ensure_completed(status: str) -> None:
    """``NotReady`` (409) unless the dataset's rows can be read."""
    if status != DatasetStatus.COMPLETED:
        raise NotReady(
            f"The dataset is {status}; rows can be read once it is completed.",
            status=status,
        )


def dataset_row_page(*, dataset: Dataset, after: int, limit: int) -> RowPage:
    """Rows numbered after ``after``, decrypted, in file order (keyset pagination)."""
    ensure_completed(dataset.status)
    cipher = dataset_row_cipher(dataset)
    return row_page(
        owner_id=dataset.owner_id,
        dataset_id=dataset.id,
        cipher=cipher,
        columns=dataset_columns(dataset, cipher),
        after=after,
        limit=limit,
    )


def row_page(
    *,
    owner_id: int,
    dataset_id: Any,
    cipher: RowCipher,
    columns: list[str],
    after: int,
    limit: int,
) -> RowPage:
    """One page of a completed dataset's rows, in one query that also checks that the
    dataset is the owner's and not deleted (a cached gate may be a moment stale)."""
    blocks = ProcessedData.objects.filter(
        dataset_id=dataset_id, dataset__owner_id=owner_id, dataset__deleted_at__isnull=True
    )
    page = rows_read(blocks, cipher, after=after, count=limit + 1)
    has_more = len(page) > limit
    rows = page[:limit]
    return RowPage(columns=columns, rows=rows, has_more=has_more)


def dataset_rows_iter(*, dataset: Dataset, batch_rows: int) -> Iterator[tuple[int, list[str]]]:
    """Every row of a completed dataset as ``(row_number, values)``, decrypted, in file order.

    Raises ``NotReady`` at once (before any row is read) unless the dataset is
    completed. The rows are then read lazily in keyset-paginated batches of
    ``batch_rows`` (by row number, :func:`rows_read`): each batch is one short
    query of its own (no transaction or cursor is held between batches) and is
    decrypted before the next one is read, so memory stays bounded by one batch
    whatever the size of the dataset.
    """
    ensure_completed(dataset.status)
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    cipher = dataset_row_cipher(dataset)
    blocks = ProcessedData.objects.filter(dataset_id=dataset.id)

    def batches() -> Iterator[tuple[int, list[str]]]:
        after = 0
        while True:
            batch = rows_read(blocks, cipher, after=after, count=batch_rows)
            yield from batch
            if len(batch) < batch_rows:  # rows are numbered 1..N without gaps
                return
            after = batch[-1][0]

    return batches()
