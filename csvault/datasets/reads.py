"""Cached reads for the hot endpoints: detail, progress and the owner's list.

On a hit these answer without touching the database (see csvault/datasets/cache.py
for the keys, what is stored and how writes clear them); on a miss they read
through the selectors, which also enforce ownership, and fill the cache.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import User

from csvault.datasets.cache import cache_get, cache_set, open_columns, seal_columns
from csvault.datasets.models import Dataset
from csvault.datasets.selectors import dataset_get, dataset_progress
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


def dataset_detail_read(*, owner: User, dataset_id: uuid.UUID) -> dict[str, Any]:
    payload = cache_get(owner.pk, dataset_id, "detail")
    if payload is None:
        payload = detail_payload(dataset_get(owner=owner, dataset_id=dataset_id))
        cache_set(owner.pk, dataset_id, "detail", payload)
    return open_payload(payload)


def dataset_progress_read(*, owner: User, dataset_id: uuid.UUID) -> dict[str, Any]:
    progress: dict[str, Any] | None = cache_get(owner.pk, dataset_id, "progress")
    if progress is None:
        progress = dataset_progress(dataset=dataset_get(owner=owner, dataset_id=dataset_id))
        cache_set(owner.pk, dataset_id, "progress", progress)
    return progress
