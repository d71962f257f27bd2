"""Per-user quotas: bytes stored and datasets in progress.

Checked twice: before the upload body is read (with the declared Content-Length),
and again in ``dataset_create`` with the real size while the owner's user row is
locked, so concurrent uploads cannot overshoot together.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Sum

from csvault.core.errors import QuotaExceeded
from csvault.datasets.models import FINAL_STATUSES, DatasetStatus
from csvault.datasets.selectors import visible_datasets

ACTIVE_RETRY_AFTER_SECONDS = 30


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MiB"


def quota_usage(*, owner: User) -> dict[str, int]:
    mine = visible_datasets().filter(owner=owner)
    stored = mine.exclude(status=DatasetStatus.REJECTED).aggregate(total=Sum("size"))["total"] or 0
    active = mine.exclude(status__in=FINAL_STATUSES).count()
    return {"stored_bytes": stored, "active": active}


def quota_check(*, owner: User, incoming_bytes: int) -> None:
    """Raise QuotaExceeded if storing ``incoming_bytes`` more would pass a quota."""
    usage = quota_usage(owner=owner)
    limit = settings.CSVAULT_QUOTA_BYTES
    if limit and usage["stored_bytes"] + incoming_bytes > limit:
        raise QuotaExceeded(
            f"Your storage quota is {_mib(limit)}; {_mib(usage['stored_bytes'])} are in use "
            f"and this file needs {_mib(incoming_bytes)}. Delete datasets you no longer need.",
            code="storage_quota_exceeded",
            stored_bytes=usage["stored_bytes"],
            quota_bytes=limit,
        )
    most = settings.CSVAULT_MAX_ACTIVE_DATASETS
    if most and usage["active"] >= most:
        raise QuotaExceeded(
            f"You already have {usage['active']} uploads being scanned or ingested "
            f"(at most {most} at a time); wait for one to finish.",
            code="too_many_active_datasets",
            status_code=429,
            retry_after=ACTIVE_RETRY_AFTER_SECONDS,
        )
