"""Celery tasks: thin shells that take ids and call services.

Scans and ingests are routed to their own queues (config/celery.py).
"""

from __future__ import annotations

import uuid

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from csvault.datasets.ingest import dataset_ingest
from csvault.datasets.scan import ScanRetry, dataset_scan, scan_retry_delay

# Database and storage trouble is retried from the last checkpoint.
_INFRA_ERRORS = (OperationalError, InterfaceError, OSError)


@shared_task(
    bind=True,
    name="csvault.scan_dataset",
    autoretry_for=_INFRA_ERRORS,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def scan_dataset(self: Task, dataset_id: str) -> str:
    try:
        return dataset_scan(dataset_id=uuid.UUID(dataset_id)).status
    except ScanRetry as exc:
        # The attempt counter on the dataset bounds the retries, not Celery's.
        delay = scan_retry_delay(self.request.retries)
        raise self.retry(countdown=delay, max_retries=None) from exc


@shared_task(
    bind=True,
    name="csvault.ingest_dataset",
    autoretry_for=_INFRA_ERRORS,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def ingest_dataset(self: Task, dataset_id: str) -> str:
    return dataset_ingest(dataset_id=uuid.UUID(dataset_id)).status


@shared_task(
    name="csvault.purge_dataset",
    autoretry_for=_INFRA_ERRORS,
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
)
def purge_dataset(dataset_id: str) -> bool:
    from csvault.datasets.services import dataset_purge

    return dataset_purge(dataset_id=uuid.UUID(dataset_id))


@shared_task(name="csvault.reap_stalled", ignore_result=True)
def reap_stalled() -> int:
    from csvault.datasets.reaper import datasets_reap

    return datasets_reap()
