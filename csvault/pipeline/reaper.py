"""The reaper: re-queue work that stalled (worker killed, message lost).

The broker-less transports never redeliver a killed worker's task and Redis
does so only after its visibility timeout, so csvault notices stalls itself:
a dataset whose heartbeat is older than ``CSVAULT_STALL_SECONDS`` (or that
has waited that long without one) gets its task sent again. Each stage's own
claim (claims.py) decides whether the message does anything, so extra sends are
harmless; the attempt counter fails a dataset that keeps killing its worker.
Which task a stage needs is the caller's (tasks.py) to say.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from functools import partial

from celery import Task
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from csvault.core import metrics
from csvault.core.storage import dataset_storage
from csvault.datasets.models import Dataset, DatasetStatus
from csvault.datasets.update import dataset_update
from csvault.pipeline.claims import VERDICT_PENDING

logger = logging.getLogger(__name__)

REAP_BATCH = 500


#: The non-final statuses of each stage.
SCAN_STATUSES = (DatasetStatus.PENDING, DatasetStatus.SCANNING)
INGEST_STATUSES = (DatasetStatus.QUEUED, DatasetStatus.PROCESSING)


def stalled_datasets() -> list[tuple[uuid.UUID, str]]:
    """(id, status) of datasets whose heartbeat (or creation, if none) is older than the stall.

    Deleted datasets not yet purged are reported with the status ``"deleted"``.
    """
    stale = timezone.now() - timedelta(seconds=settings.CSVAULT_STALL_SECONDS)
    working = list(
        Dataset.objects.filter(status__in=SCAN_STATUSES + INGEST_STATUSES, deleted_at__isnull=True)
        .filter(Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, created_at__lt=stale))
        .order_by("created_at")
        .values_list("id", "status")[:REAP_BATCH]
    )
    unpurged = Dataset.objects.filter(deleted_at__lt=stale).values_list("id", flat=True)
    return working + [(dataset_id, "deleted") for dataset_id in unpurged[:REAP_BATCH]]


def unfinished_uploads_sweep() -> int:
    """At most once per ``CSVAULT_UNFINISHED_UPLOAD_SECONDS``: remove what uploads cut
    short by a dying web process left in the store (csvault/core/storage.py)."""
    age = settings.CSVAULT_UNFINISHED_UPLOAD_SECONDS
    if age <= 0 or cache.add("swept-unfinished-uploads", 1, timeout=age) is False:
        return 0
    open_uploads = set(
        Dataset.objects.filter(status=DatasetStatus.UPLOADING).values_list("storage_key", flat=True)
    )
    try:
        removed = int(dataset_storage().sweep_unfinished(older_than=age, keep=open_uploads))
    except OSError as exc:  # the store is down: the next sweep tries again
        logger.warning("unfinished uploads not swept: %s", exc)
        cache.delete("swept-unfinished-uploads")
        return 0
    if removed:
        logger.warning("removed %d unfinished uploads older than %d s", removed, age)
    return removed


def uploads_expire(*, purge: Task) -> int:
    """Delete the datasets of resumable uploads past their ``Upload-Expires``: the key
    is shredded at once, and the purge removes what the store holds (staged pieces and
    unfinished multipart uploads included). Returns how many."""
    now = timezone.now()
    expired = Dataset.objects.filter(
        status=DatasetStatus.UPLOADING, deleted_at__isnull=True, resumable__expires_at__lt=now
    ).values_list("id", flat=True)
    count = 0
    for dataset_id in list(expired[:REAP_BATCH]):
        with transaction.atomic():
            if dataset_update(
                dataset_id=dataset_id,
                where=Q(status=DatasetStatus.UPLOADING),
                status=DatasetStatus.CANCELLED,
                finished_at=now,
                error={"code": "upload_expired", "message": "The upload expired unfinished."},
            ):
                dataset_update(dataset_id=dataset_id, wrapped_key=b"", deleted_at=now)
                transaction.on_commit(partial(purge.delay, str(dataset_id)))
                count += 1
    if count:
        logger.info("%d expired resumable uploads deleted", count)
    return count


def _back_to_scan(dataset_id: uuid.UUID) -> bool:
    """Send a stalled ingest that has no verdict yet back to ``pending``; True if it was."""
    stale = timezone.now() - timedelta(seconds=settings.CSVAULT_STALL_SECONDS)
    return dataset_update(
        dataset_id=dataset_id,
        where=Q(status__in=INGEST_STATUSES, heartbeat_at__lt=stale) & VERDICT_PENDING,
        status=DatasetStatus.PENDING,
        heartbeat_at=timezone.now(),
    )


def datasets_reap(*, tasks: Mapping[str, Task]) -> int:
    """Send the task of every stalled dataset again; returns how many were sent.

    ``tasks`` maps ``"scan"``, ``"ingest"`` and ``"purge"`` to the Celery task that
    does that work for a dataset id. An ingest that stalled before its scan's verdict
    goes back to ``pending``: the scan runs again, then the ingest resumes.
    """
    sent = 0
    for dataset_id, status in stalled_datasets():
        # At most one re-send per stall period per dataset, whatever the tick. A cache
        # that is down answers None (django-redis ignores the error): send anyway, as
        # an extra send is harmless and a missed one leaves the dataset stalled.
        if cache.add(f"reaped:{dataset_id}", 1, timeout=settings.CSVAULT_STALL_SECONDS) is False:
            continue
        if status == "deleted":
            stage = "purge"
        elif status in SCAN_STATUSES or _back_to_scan(dataset_id):
            stage = "scan"
        else:
            stage = "ingest"
        task = tasks[stage]
        task.delay(str(dataset_id))
        sent += 1
        metrics.record_requeue(task.name)
        logger.warning("re-queued stalled dataset %s (%s)", dataset_id, status)
    return sent
