"""Celery tasks: thin shells that take ids, call the pipeline's services and declare
the retry policy. Scans and ingests are routed to their own queues (config/celery.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.purge import dataset_purge
from csvault.pipeline.reaper import datasets_reap, unfinished_uploads_sweep, uploads_expire
from csvault.pipeline.scan import ScanRetry, dataset_scan, scan_retry_delay

# Database and storage trouble is retried from the last checkpoint, with backoff.
_INFRA_ERRORS = (OperationalError, InterfaceError, OSError)
_RETRY_INFRA: dict[str, Any] = {
    "autoretry_for": _INFRA_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "max_retries": 8,
}


def _queue_ingest(dataset_id: uuid.UUID) -> None:
    ingest_dataset.delay_on_commit(str(dataset_id))


def _ingests_here(task: Task) -> bool:
    """Whether this worker consumes the ingest queue too: then its scans run the ingest
    while clamd decides (``CSVAULT_INGEST_DURING_SCAN``; scan.py) instead of queueing it.
    A worker that takes scans only leaves ingests to the workers that take them."""
    if not settings.CSVAULT_INGEST_DURING_SCAN:
        return False
    route = task.app.amqp.router.route({}, ingest_dataset.name)
    return route["queue"].name in task.app.amqp.queues.consume_from


@shared_task(bind=True, name="csvault.scan_dataset", retry_jitter=True, **_RETRY_INFRA)
def scan_dataset(self: Task, dataset_id: str) -> str:
    try:
        return dataset_scan(
            dataset_id=uuid.UUID(dataset_id),
            on_clean=_queue_ingest,
            then_ingest=_ingests_here(self),
        ).status
    except ScanRetry as exc:
        # The attempt counter on the dataset bounds the retries, not Celery's.
        delay = scan_retry_delay(self.request.retries)
        raise self.retry(countdown=delay, max_retries=None) from exc


@shared_task(bind=True, name="csvault.ingest_dataset", retry_jitter=True, **_RETRY_INFRA)
def ingest_dataset(self: Task, dataset_id: str) -> str:
    return dataset_ingest(dataset_id=uuid.UUID(dataset_id)).status


@shared_task(name="csvault.purge_dataset", **_RETRY_INFRA)
def purge_dataset(dataset_id: str) -> bool:
    return dataset_purge(dataset_id=uuid.UUID(dataset_id))


@shared_task(name="csvault.reap_stalled", ignore_result=True)
def reap_stalled() -> int:
    sent = datasets_reap(
        tasks={"scan": scan_dataset, "ingest": ingest_dataset, "purge": purge_dataset}
    )
    uploads_expire(purge=purge_dataset)
    unfinished_uploads_sweep()
    return sent
