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


def stalled_dataset_ids() -> list[uuid.UUID]:
    stale = timezone.now() - timedelta(seconds=settings.CSVAULT_STALL_SECONDS)
    waiting = (DatasetStatus.PENDING, DatasetStatus.QUEUED)
    return list(
        Dataset.objects.filter(
            Q(status=DatasetStatus.PROCESSING, heartbeat_at__lt=stale)
            | Q(status__in=waiting, heartbeat_at__lt=stale)
            | Q(status__in=waiting, heartbeat_at__isnull=True, created_at__lt=stale)
        )
        .order_by("created_at")
        .values_list("id", flat=True)[:REAP_BATCH]
    )


def datasets_reap() -> int:
    """Send the ingest task again for every stalled dataset; returns how many were sent."""
    from csvault.datasets.tasks import ingest_dataset

    sent = 0
    for dataset_id in stalled_dataset_ids():
        # At most one re-send per stall period per dataset, whatever the tick.
        if not cache.add(f"reaped:{dataset_id}", 1, timeout=settings.CSVAULT_STALL_SECONDS):
            continue
        ingest_dataset.delay(str(dataset_id))
        sent += 1
        logger.warning("re-queued stalled dataset %s", dataset_id)
    return sent
