"""Every read of datasets, scoped to the owner, with the cache behind the hot ones.

The API views call these and know neither cache keys nor TTLs. Detail, progress
and the owner's list answer from the cache when it holds a value of the
dataset's current generation (cache.py: what is stored, and how
``dataset_update`` clears it); on a miss they read the database, which also
enforces ownership, and fill the cache. Row pages take owner, status and key
from the cached detail and then read the rows in one query.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404

from csvault.core.errors import NotReady
from csvault.crypto.rows import RowCipher
from csvault.datasets.cache import (
    TTL_SECONDS,
    cache_get,
    cache_set,
    list_cache_key,
    open_columns,
    open_sealed,
    seal_columns,
)
from csvault.datasets.keys import dataset_columns, dataset_profile, dataset_row_cipher
from csvault.datasets.models import Dataset, DatasetStatus, ProcessedData
from csvault.datasets.progress import progress_from_checkpoint
from csvault.datasets.serializers import DatasetSerializer
from csvault.pipeline.rowstore import rows_read, rows_read_owned


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


def dataset_get(*, owner: User, dataset_id: Any) -> Dataset:
    """The caller's dataset; 404 for an absent one and for another user's alike."""
    try:
        return visible_datasets().get(id=dataset_id, owner=owner)
    except (ValueError, TypeError, ValidationError) as exc:
        raise DatasetNotFound() from exc
    except Dataset.DoesNotExist as exc:
        foreign = visible_datasets().filter(id=dataset_id).exclude(owner=owner).exists()
        raise DatasetNotFound(dataset_id, foreign=foreign) from exc


def dataset_by_idempotency_key(*, owner: User, key: str) -> Dataset | None:
    return visible_datasets().filter(owner=owner, idempotency_key=key).first()


def _detail_payload(dataset: Dataset) -> dict[str, Any]:
    """The detail as cached: header names sealed (ciphertext + wrapped key), never plain."""
    data = dict(DatasetSerializer(dataset, context={"sealed_columns": True}).data)
    data["columns"] = seal_columns(dataset)
    return data


def open_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A cached detail as the API shows it: header names and warnings opened."""
    data = dict(payload)
    data["columns"], data["warnings"] = open_columns(data["id"], payload["columns"])
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


def dataset_detail(*, owner: User, dataset_id: uuid.UUID) -> dict[str, Any]:
    """The caller's dataset as the API shows it, from the cache when fresh."""
    return open_payload(_read_through(owner, dataset_id, "detail", _detail_payload))


def dataset_progress(*, owner: User, dataset_id: uuid.UUID) -> dict[str, Any]:
    """The progress of the caller's dataset (progress.py), from the cache when fresh."""
    return _read_through(
        owner, dataset_id, "progress", lambda d: progress_from_checkpoint(dataset=d)
    )


def dataset_list(*, owner: User, search: str = "", status: str = "") -> QuerySet[Dataset]:
    """The owner's datasets; ``search`` matches names (case-insensitive, anywhere),
    ``status`` one status."""
    datasets = visible_datasets().filter(owner=owner).defer("wrapped_key")
    if search:
        datasets = datasets.filter(name__icontains=search)
    if status:
        datasets = datasets.filter(status=status)
    return datasets


def dataset_list_page(
    *,
    owner: User,
    cursor: str,
    page_size: int | None,
    paginate: Callable[[QuerySet[Dataset], Callable[[Dataset], dict[str, Any]]], dict[str, Any]],
    search: str = "",
    status: str = "",
) -> dict[str, Any]:
    """One page of the owner's datasets, newest first; the first page (the hot one)
    from the cache when fresh.

    ``paginate(queryset, item)`` is the API's pagination (it knows the request,
    hence the page links); it turns each dataset into ``item(dataset)``. Only first
    pages are cached, one entry per (normalised) page size: what one user can put in
    the cache is bounded by the page sizes there are, not by the cursors they make up.
    Filtered lists (``search``, ``status``) are read from the database.
    """
    unfiltered = not (cursor or search or status)
    key = list_cache_key(owner.pk, str(page_size)) if unfiltered else None
    body = cache.get(key) if key else None
    if body is None:
        body = paginate(dataset_list(owner=owner, search=search, status=status), _detail_payload)
        if key:
            cache.set(key, body, TTL_SECONDS)
    return {**body, "results": [open_payload(item) for item in body["results"]]}


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


def dataset_profile_get(*, owner: User, dataset_id: uuid.UUID) -> dict[str, Any]:
    """The column profile of the caller's completed dataset, decrypted from the database
    (never cached: it holds values)."""
    dataset = dataset_get(owner=owner, dataset_id=dataset_id)
    ensure_completed(dataset.status)
    profile = dataset_profile(dataset)
    return {"row_count": dataset.row_count, "columns": profile or []}


def dataset_row_page(*, owner: User, dataset_id: uuid.UUID, after: int, limit: int) -> RowPage:
    """A page of rows: owner, status and key from the cached detail, then one query.

    The cached detail is the gate (its key carries the owner, and a write, a
    cancel or a DELETE gives the dataset a new generation, so the next read goes
    to the database and answers 404/409 as it should). A detail without a sealed
    header, or whose key is gone, falls back to the database path.
    """
    payload = _read_through(owner, dataset_id, "detail", _detail_payload)
    ensure_completed(payload["status"])
    page = row_page_from_detail(owner_id=owner.pk, detail=payload, after=after, limit=limit)
    if page is None:
        return _row_page_from_database(
            dataset_get(owner=owner, dataset_id=dataset_id), after, limit
        )
    return page


def row_page_from_detail(
    *, owner_id: int, detail: dict[str, Any], after: int, limit: int
) -> RowPage | None:
    """A page of rows with a fresh cached detail as the gate (its key carried the owner);
    None when the detail cannot open them (not completed, no sealed header, key gone)."""
    if detail.get("status") != DatasetStatus.COMPLETED:
        return None
    opened = open_sealed(detail["id"], detail["columns"])
    if opened is None:
        return None
    cipher, columns = opened
    return _row_page(
        owner_id=owner_id,
        dataset_id=detail["id"],
        cipher=cipher,
        columns=columns,
        after=after,
        limit=limit,
    )


def _row_page_from_database(dataset: Dataset, after: int, limit: int) -> RowPage:
    """Rows numbered after ``after``, decrypted, in file order (keyset pagination)."""
    ensure_completed(dataset.status)
    cipher = dataset_row_cipher(dataset)
    return _row_page(
        owner_id=dataset.owner_id,
        dataset_id=dataset.id,
        cipher=cipher,
        columns=dataset_columns(dataset, cipher),
        after=after,
        limit=limit,
    )


def _row_page(
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
    page = rows_read_owned(
        dataset_id=dataset_id, owner_id=owner_id, cipher=cipher, after=after, count=limit + 1
    )
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
