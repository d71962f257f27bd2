"""The reaper: re-queue work that stalled (worker killed, message lost).

The broker-less transports never redeliver a killed worker's task and Redis
does so only after its visibility timeout, so csvault notices stalls itself:
a dataset whose heartbeat is older than ``CSVAULT_STALL_SECONDS`` (or that
has waited that long without one) gets its task sent again. The ingest's own
claim decides whether the message does anything, so extra sends are harmless;
the attempt counter fails a dataset that keeps killing its worker.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

from csvault.datasets.models import Dataset, DatasetStatus

logger = logging.getLogger(__name__)

REAP_BATCH = 500


#: Non-final statuses and the task that moves each on.
SCAN_STATUSES = (DatasetStatus.PENDING, DatasetStatus.SCANNING)
INGEST_STATUSES = (DatasetStatus.QUEUED, DatasetStatus.PROCESSING)


def stalled_datasets() -> list[tuple[uuid.UUID, str]]:
    """(id, status) of datasets whose heartbeat (or creation, if none) is older than the stall."""
    stale = timezone.now() - timedelta(seconds=settings.CSVAULT_STALL_SECONDS)
    return list(
        Dataset.objects.filter(status__in=SCAN_STATUSES + INGEST_STATUSES)
        .filter(Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, created_at__lt=stale))
        .order_by("created_at")
        .values_list("id", "status")[:REAP_BATCH]
    )


def datasets_reap() -> int:
    """Send the scan or ingest task again for every stalled dataset; returns how many were sent."""
    from csvault.datasets.tasks import ingest_dataset, scan_dataset

    sent = 0
    for dataset_id, status in stalled_datasets():
        # At most one re-send per stall period per dataset, whatever the tick.
        if not cache.add(f"reaped:{dataset_id}", 1, timeout=settings.CSVAULT_STALL_SECONDS):
            continue
        task = scan_dataset if status in SCAN_STATUSES else ingest_dataset
        task.delay(str(dataset_id))
        sent += 1
        logger.warning("re-queued stalled dataset %s (%s)", dataset_id, status)
    return sent
