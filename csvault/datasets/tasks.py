"""Celery tasks: thin shells that take ids and call services."""

from __future__ import annotations

import uuid

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from csvault.datasets.ingest import dataset_ingest


@shared_task(
    bind=True,
    name="csvault.ingest_dataset",
    autoretry_for=(OperationalError, InterfaceError, OSError),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def ingest_dataset(self: Task, dataset_id: str) -> str:
    return dataset_ingest(dataset_id=uuid.UUID(dataset_id)).status


@shared_task(name="csvault.reap_stalled", ignore_result=True)
def reap_stalled() -> int:
    from csvault.datasets.reaper import datasets_reap

    return datasets_reap()
