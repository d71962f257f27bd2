"""The scan service: stream a stored file's plaintext to the malware scanner.

``pending -> scanning -> queued`` on a clean verdict (the ingest is queued after
commit); ``rejected`` on a finding (the stored file is destroyed and the
signature name kept in the error). Only a definite clean verdict lets a file go
on: when the scanner is unavailable the dataset goes back to ``pending`` and the
task retries with backoff; after ``CSVAULT_SCAN_MAX_ATTEMPTS`` scans it fails
with ``scanner_unavailable``. A file is never ingested unscanned.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.storage import storages
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from csvault.audit.models import AuditAction
from csvault.audit.services import audit_record
from csvault.core import metrics
from csvault.crypto.stream import StreamDecryptError, open_decrypted
from csvault.datasets.ingest import HEARTBEAT_EVERY_SECONDS, file_corrupt_error
from csvault.datasets.keys import dataset_data_key
from csvault.datasets.models import Dataset, DatasetStatus
from csvault.scanning import ScannerUnavailable, ScanResult, get_scanner

logger = logging.getLogger(__name__)


class ScanRetry(Exception):
    """The scanner gave no verdict; the scan should be tried again later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ScanOutcome:
    status: str
    signature: str | None = None


def _scanning(dataset_id: uuid.UUID, attempt: int) -> QuerySet[Dataset]:
    return Dataset.objects.for_write(dataset_id).filter(
        status=DatasetStatus.SCANNING, scan_attempts=attempt
    )


def dataset_scan_claim(*, dataset_id: uuid.UUID) -> int | None:
    """Take a pending dataset (or one whose scan stalled) for a scan; its scan attempt or None."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CSVAULT_STALL_SECONDS)
    with transaction.atomic():
        claimed = (
            Dataset.objects.for_write(dataset_id)
            .filter(
                Q(status=DatasetStatus.PENDING)
                | Q(status=DatasetStatus.SCANNING, heartbeat_at__lt=stale)
            )
            .update(
                status=DatasetStatus.SCANNING,
                scan_attempts=F("scan_attempts") + 1,
                heartbeat_at=now,
            )
        )
        if not claimed:
            return None
        return Dataset.objects.values_list("scan_attempts", flat=True).get(id=dataset_id)


def dataset_scan(*, dataset_id: uuid.UUID) -> ScanOutcome:
    """Scan one dataset's file; safe to call more than once (a second call does nothing).

    Raises :class:`ScanRetry` when the scanner gave no verdict and attempts remain.
    """
    attempt = dataset_scan_claim(dataset_id=dataset_id)
    if attempt is None:
        logger.info("scan of %s skipped: not pending", dataset_id)
        return ScanOutcome("skipped")
    if attempt > settings.CSVAULT_SCAN_MAX_ATTEMPTS:
        _fail(
            dataset_id,
            attempt,
            DatasetStatus.FAILED,
            {
                "code": "too_many_attempts",
                "message": f"The scan was started {attempt - 1} times without finishing; "
                "giving up. Contact the operator.",
            },
        )
        return ScanOutcome(DatasetStatus.FAILED)
    dataset = Dataset.objects.get(id=dataset_id)
    scanner = get_scanner()
    started = time.monotonic()
    try:
        with storages["datasets"].open(dataset.storage_key, "rb") as fh:
            plaintext = open_decrypted(dataset_data_key(dataset), dataset.id, fh)
            result = scanner.scan(_heartbeat(plaintext, dataset.id, attempt))
    except ScannerUnavailable as exc:
        return _unavailable(dataset.id, attempt, str(exc))
    except StreamDecryptError as exc:
        _fail(
            dataset.id,
            attempt,
            DatasetStatus.FAILED,
            file_corrupt_error(exc),
        )
        return ScanOutcome(DatasetStatus.FAILED)
    except _LostScan:
        return ScanOutcome("stopped")
    except Exception:
        _release(dataset.id, attempt)
        raise
    elapsed = time.monotonic() - started
    if result.clean:
        return _clean(dataset, attempt, scanner.name, elapsed)
    return _reject(dataset, attempt, scanner.name, result)


class _LostScan(Exception):
    """The dataset was cancelled or deleted during the scan."""


def _heartbeat(chunks: Iterable[bytes], dataset_id: uuid.UUID, attempt: int) -> Iterator[bytes]:
    last = time.monotonic()
    for chunk in chunks:
        if time.monotonic() - last > HEARTBEAT_EVERY_SECONDS:
            if not _scanning(dataset_id, attempt).update(heartbeat_at=timezone.now()):
                raise _LostScan
            last = time.monotonic()
        yield chunk


def _clean(dataset: Dataset, attempt: int, scanner_name: str, elapsed: float) -> ScanOutcome:
    from csvault.datasets.tasks import ingest_dataset

    with transaction.atomic():
        if not _scanning(dataset.id, attempt).update(
            status=DatasetStatus.QUEUED, scanner=scanner_name, heartbeat_at=timezone.now()
        ):
            return ScanOutcome("stopped")
        ingest_dataset.delay_on_commit(str(dataset.id))  # type: ignore[attr-defined]
        audit_record(
            AuditAction.SCAN_CLEAN,
            user_id=dataset.owner_id,
            dataset_id=dataset.id,
            scanner=scanner_name,
        )
    metrics.record_scan("clean", scanner_name)
    logger.info("scan of %s clean (%s, %.2f s)", dataset.id, scanner_name, elapsed)
    return ScanOutcome(DatasetStatus.QUEUED)


def _reject(dataset: Dataset, attempt: int, scanner_name: str, result: ScanResult) -> ScanOutcome:
    signature = result.signature or "unknown"
    if result.exceeds_limits:
        error = {
            "code": "too_large_to_scan",
            "message": f"The file exceeds the malware scanner's limits ({signature}); "
            "it was rejected unscanned. Split it into smaller files.",
            "signature": signature,
        }
    else:
        error = {
            "code": "malware_found",
            "message": f"The malware scanner found {signature} in the file; "
            "it was rejected and deleted.",
            "signature": signature,
        }
    with transaction.atomic():
        if not _scanning(dataset.id, attempt).update(
            status=DatasetStatus.REJECTED,
            error=error,
            scanner=scanner_name,
            finished_at=timezone.now(),
        ):
            return ScanOutcome("stopped")
        storage_key = dataset.storage_key
        transaction.on_commit(lambda: storages["datasets"].delete(storage_key))
        audit_record(
            AuditAction.SCAN_REJECTED,
            user_id=dataset.owner_id,
            dataset_id=dataset.id,
            scanner=scanner_name,
            signature=signature,
        )
    metrics.record_scan("too_large" if result.exceeds_limits else "infected", scanner_name)
    logger.warning("scan of %s rejected: %s (%s)", dataset.id, signature, scanner_name)
    return ScanOutcome(DatasetStatus.REJECTED, signature)


def _unavailable(dataset_id: uuid.UUID, attempt: int, reason: str) -> ScanOutcome:
    metrics.record_scan("unavailable", get_scanner().name)
    if attempt >= settings.CSVAULT_SCAN_MAX_ATTEMPTS:
        _fail(
            dataset_id,
            attempt,
            DatasetStatus.FAILED,
            {
                "code": "scanner_unavailable",
                "message": f"The malware scanner was unavailable for {attempt} attempts "
                f"(last: {reason}); the file was not ingested. Upload it again later.",
            },
        )
        audit_record(AuditAction.SCAN_FAILED, dataset_id=dataset_id, reason="scanner_unavailable")
        return ScanOutcome(DatasetStatus.FAILED)
    logger.warning("scan of %s: scanner unavailable (attempt %d): %s", dataset_id, attempt, reason)
    _release(dataset_id, attempt)
    raise ScanRetry(reason)


def _fail(dataset_id: uuid.UUID, attempt: int, status: str, error: dict[str, object]) -> None:
    _scanning(dataset_id, attempt).update(status=status, error=error, finished_at=timezone.now())
    logger.warning("scan of %s failed: %s", dataset_id, error["code"])


def _release(dataset_id: uuid.UUID, attempt: int) -> None:
    """Back to pending; the heartbeat keeps the reaper off until a retry is due."""
    try:
        _scanning(dataset_id, attempt).update(
            status=DatasetStatus.PENDING, heartbeat_at=timezone.now()
        )
    except Exception:
        logger.warning("could not release the scan of %s", dataset_id, exc_info=True)


def scan_retry_delay(retries: int) -> float:
    """Seconds before retry number ``retries + 1``: doubling from the base, at most 5 minutes."""
    return float(min(settings.CSVAULT_SCAN_RETRY_SECONDS * (2**retries), 300.0))
