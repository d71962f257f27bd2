"""Who works on a dataset: claim, heartbeat, release and fail, for every stage.

A stage (the scan, the ingest) claims a dataset by moving it from a waiting status
to its running status and counting an attempt, in one conditional UPDATE; the
attempt number then identifies the run. Every later write of the run is
conditional on "still running, still this attempt", so a dataset that was
cancelled, deleted or taken over after a stall is never written by the old run:
its next write finds nothing to update and raises :class:`LostOwnership`. A run
that stalls (its worker died) keeps a heartbeat older than
``CSVAULT_STALL_SECONDS`` and can be claimed again; the attempt counter lets a
stage give up on a file that kills its worker every time.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from csvault.datasets.models import Dataset, DatasetStatus
from csvault.datasets.update import dataset_update

logger = logging.getLogger(__name__)

# How often a running stage refreshes its heartbeat.
HEARTBEAT_EVERY_SECONDS = 5.0

#: A clean verdict is recorded with the scanner's name (a finding ends the dataset
#: ``rejected``). Until then a dataset may be queued or processing only for an ingest
#: that runs while the scanner decides (scan.py), never for a plain ingest.
VERDICT_PENDING = Q(scanner="")


class LostOwnership(Exception):
    """The dataset was cancelled, deleted or taken over by another run."""


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline as a state machine over a dataset's status."""

    name: str
    waiting: DatasetStatus  # claimed from this status
    running: DatasetStatus  # while a run owns it
    attempts_field: str  # the counter of runs started


SCAN = Stage("scan", DatasetStatus.PENDING, DatasetStatus.SCANNING, "scan_attempts")
INGEST = Stage("ingest", DatasetStatus.QUEUED, DatasetStatus.PROCESSING, "attempts")


@dataclass(frozen=True)
class Claim:
    """One run of a stage on one dataset; its writes succeed only while it owns it."""

    stage: Stage
    dataset_id: uuid.UUID
    attempt: int

    def update(self, *, only: Q | None = None, **fields: Any) -> bool:
        """Write ``fields`` if this run still owns the dataset (and it matches ``only``);
        False if it does not."""
        where = Q(status=self.stage.running, **{self.stage.attempts_field: self.attempt})
        return dataset_update(
            dataset_id=self.dataset_id,
            where=where & only if only is not None else where,
            **fields,
        )

    def write(self, **fields: Any) -> None:
        """:meth:`update`, raising :class:`LostOwnership` if this run no longer owns it."""
        if not self.update(**fields):
            raise LostOwnership

    def heartbeat(self) -> None:
        self.write(heartbeat_at=timezone.now())

    def fail(self, error: dict[str, Any], **fields: Any) -> bool:
        """End the run with the status ``failed`` and ``error``; False if it was not owned."""
        return self.update(
            status=DatasetStatus.FAILED, error=error, finished_at=timezone.now(), **fields
        )

    def release(self, to: DatasetStatus | None = None, *, only: Q | None = None) -> bool:
        """Hand the dataset back to the waiting status (or ``to``: an ingest that ran
        before the scan's verdict goes back to the scan) if it matches ``only``, so a
        retry can claim it at once; False if it was not handed back.

        The fresh heartbeat keeps the reaper off until a retry is due. If even this
        fails (the database is gone), the heartbeat goes stale and the reaper re-sends.
        """
        try:
            close_old_connections()  # drop a connection the error left broken
            return self.update(
                status=to or self.stage.waiting, heartbeat_at=timezone.now(), only=only
            )
        except Exception:
            logger.warning(
                "could not release the %s of %s", self.stage.name, self.dataset_id, exc_info=True
            )
            return False


def claim(
    stage: Stage, *, dataset_id: uuid.UUID, only: Q | None = None, **on_claim: Any
) -> Claim | None:
    """Take the dataset for one run of ``stage``; None if it is not waiting or stalled.

    Claimable: datasets in the stage's waiting status, and those in its running
    status whose heartbeat is older than ``CSVAULT_STALL_SECONDS`` (their worker
    died); and, when given, matching ``only``. ``on_claim`` holds extra fields set
    by the same UPDATE.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CSVAULT_STALL_SECONDS)
    where = Q(status=stage.waiting) | Q(status=stage.running, heartbeat_at__lt=stale)
    with transaction.atomic():
        claimed = dataset_update(
            dataset_id=dataset_id,
            where=where & only if only is not None else where,
            status=stage.running,
            heartbeat_at=now,
            **{stage.attempts_field: F(stage.attempts_field) + 1},
            **on_claim,
        )
        if not claimed:
            return None
        attempt = Dataset.objects.values_list(stage.attempts_field, flat=True).get(id=dataset_id)
    return Claim(stage, dataset_id, attempt)


def attempts_exhausted(
    claimed: Claim, *, most: int, what: str, advice: str
) -> dict[str, Any] | None:
    """The error to fail the dataset with if ``claimed`` is past ``most`` attempts (a file
    that kills its worker every time); None while attempts remain."""
    if claimed.attempt <= most:
        return None
    return {
        "code": "too_many_attempts",
        "message": f"{what} was started {claimed.attempt - 1} times without finishing; "
        f"giving up. {advice}",
    }


def file_corrupt_error(exc: Exception) -> dict[str, object]:
    """The dataset error for a stored file that fails its integrity check."""
    return {
        "code": "file_corrupt",
        "message": f"The stored file failed its integrity check: {exc}",
    }
