"""Scrape-time gauges of datasets for ``/metrics`` (registered with core.metrics)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Min
from django.db.models.functions import Coalesce
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from csvault.datasets.models import FINAL_STATUSES, Dataset, DatasetStatus


def dataset_gauges() -> Iterator[GaugeMetricFamily]:
    """Datasets by status, and how long the least recent one of each non-final status
    has shown no activity."""
    rows = Dataset.objects.values("status").annotate(
        n=Count("id"), oldest=Min(Coalesce("heartbeat_at", "created_at"))
    )
    by_status = {row["status"]: row for row in rows}
    count = GaugeMetricFamily("csvault_datasets", "Datasets by status.", labels=["status"])
    age = GaugeMetricFamily(
        "csvault_datasets_oldest_activity_age_seconds",
        "Non-final statuses: seconds since the least recent heartbeat (or upload) "
        "among datasets in that status; 0 when there are none.",
        labels=["status"],
    )
    now = timezone.now()
    for status in DatasetStatus.values:
        row = by_status.get(status)
        count.add_metric([status], row["n"] if row else 0)
        if status not in FINAL_STATUSES:
            oldest = row["oldest"] if row else None
            age.add_metric([status], (now - oldest).total_seconds() if oldest else 0.0)
    yield count
    yield age
