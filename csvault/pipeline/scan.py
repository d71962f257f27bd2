"""The scan service: stream a stored file's plaintext to the malware scanner.

The same pass detects the file's encoding and delimiter (those not given with the
upload; csvault/csvio/detect.py) and records them with the verdict. A file that is
not UTF-8 is scanned a second time as UTF-8 text, so a signature is found whatever
the encoding hides it in.

``pending -> scanning -> queued`` on a clean verdict (``on_clean``, the task
shell's hand-off to the ingest, runs in the same transaction: queued after
commit); ``rejected`` on a finding (the stored file is destroyed and the
signature name kept in the error).

With ``then_ingest`` the ingest does not wait for the verdict: clamd reads the
stream and scans it in its own process, so this process reads the file once for its
format, then sends the stream from a thread (csvault/scanning/background.py) and
runs the ingest meanwhile (with the files on S3 the stream goes first, then the
ingest; ``scanning -> queued -> processing`` with no scanner recorded). Nothing of
the file can be read before the verdict: rows are readable only once ``completed``,
the header is written with the verdict, and the last batch waits for it (a
database constraint: no ``completed`` without a scanner).
A finding stops the ingest and rejects the dataset with its rows deleted; no
verdict sends the dataset back to ``pending`` with its checkpoint (the rows stay
unreadable), and so does the reaper for a stalled run of this kind. Only a first
scan runs the ingest meanwhile: the next one waits for its verdict and queues the
ingest, which resumes from the checkpoint. Only a definite clean verdict lets a file go
on: when the scanner is unavailable the dataset goes back to ``pending`` and the
task retries with backoff; after ``CSVAULT_SCAN_MAX_ATTEMPTS`` scans it fails
with ``scanner_unavailable``. A file is never ingested unscanned.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from csvault.audit.models import AuditAction
from csvault.audit.services import audit_record
from csvault.core import metrics
from csvault.core.storage import dataset_storage
from csvault.crypto.stream import StreamDecryptError, open_decrypted
from csvault.csvio.detect import Detected, Probe
from csvault.csvio.transcode import Utf8Chunks
from csvault.datasets.keys import dataset_data_key
from csvault.datasets.models import Dataset, DatasetStatus
from csvault.pipeline.claims import (
    HEARTBEAT_EVERY_SECONDS,
    SCAN,
    VERDICT_PENDING,
    Claim,
    LostOwnership,
    attempts_exhausted,
    claim,
    file_corrupt_error,
)
from csvault.pipeline.ingest import ingest_claim, ingest_claimed
from csvault.pipeline.rowstore import rows_delete
from csvault.pipeline.verdict import CleanVerdict
from csvault.scanning import ScannerUnavailable, ScanResult, get_scanner
from csvault.scanning.background import BackgroundScan, Watch
from csvault.scanning.base import PendingScan, Scanner, Settled

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


def dataset_scan(
    *,
    dataset_id: uuid.UUID,
    on_clean: Callable[[uuid.UUID], None] | None,
    then_ingest: bool = False,
) -> ScanOutcome:
    """Scan one dataset's file; safe to call more than once (a second call does nothing).

    ``on_clean(dataset_id)`` runs inside the transaction that records a clean
    verdict: the task shell queues the ingest there, on commit. Callers that run
    the ingest themselves (tests, the hot-path bench) pass None explicitly. With
    ``then_ingest``, the ingest runs here while the scanner decides (the module's
    docstring) and ``on_clean`` is not called. Raises :class:`ScanRetry` when the
    scanner gave no verdict and attempts remain.
    """
    claimed = claim(SCAN, dataset_id=dataset_id)
    if claimed is None:
        logger.info("scan of %s skipped: not pending", dataset_id)
        return ScanOutcome("skipped")
    exhausted = attempts_exhausted(
        claimed,
        most=settings.CSVAULT_SCAN_MAX_ATTEMPTS,
        what="The scan",
        advice="Contact the operator.",
    )
    if exhausted is not None:
        _fail(claimed, exhausted)
        return ScanOutcome(DatasetStatus.FAILED)
    dataset = Dataset.objects.get(id=dataset_id)
    scanner = get_scanner()
    started = time.monotonic()
    # A resumable upload arrives over many requests: its SHA-256 is taken here.
    sha256 = hashlib.sha256() if not dataset.sha256 else None
    # What the upload gave is kept; what an earlier scan detected is detected again.
    probe = Probe(
        encoding="" if dataset.encoding_detected else dataset.encoding,
        delimiter="" if dataset.delimiter_detected else dataset.delimiter,
    )
    # A scan tried again takes the plain way: each ingest run counts as an attempt, and
    # the scanner's or the worker's trouble must not use them up.
    first = then_ingest and claimed.attempt == 1
    try:
        if first and scanner.decides_elsewhere and _cheap_rereads():
            # One read for the format, then the stream goes from a thread beside the ingest
            # (an object store's extra GET and its buffers beside the ingest's cost more).
            found = _probe(dataset, claimed, probe, sha256)
            pending: PendingScan = BackgroundScan(
                partial(_stream, dataset, scanner, found.encoding)
            )
            meanwhile = True
        else:
            pending, found = _scan_passes(dataset, scanner, claimed, probe, sha256)
            # A verdict already known (the built-in matcher) takes the plain way.
            meanwhile = first and not pending.ready(0)
        if not meanwhile:
            result = _result(pending, claimed)
    except ScannerUnavailable as exc:
        return _unavailable(claimed, str(exc), owner_id=dataset.owner_id, scan=claimed)
    except StreamDecryptError as exc:
        _fail(claimed, file_corrupt_error(exc))
        return ScanOutcome(DatasetStatus.FAILED)
    except LostOwnership:
        return ScanOutcome("stopped")
    except Exception:
        claimed.release()
        raise
    if meanwhile:
        digest: dict[str, Any] = {"sha256": sha256.hexdigest()} if sha256 else {}
        return _ingest_meanwhile(dataset, claimed, scanner.name, pending, found, started, digest)
    elapsed = time.monotonic() - started
    if result.clean:
        if sha256 is not None:
            claimed.update(sha256=sha256.hexdigest())
        return _clean(dataset, claimed, scanner.name, elapsed, on_clean, found)
    return _reject(dataset, claimed, scanner.name, result)


def _cheap_rereads() -> bool:
    return bool(getattr(dataset_storage(), "cheap_rereads", False))


@contextmanager
def _plaintext(dataset: Dataset) -> Iterator[Iterator[bytes]]:
    with dataset_storage().open(dataset.storage_key, "rb") as fh:
        yield open_decrypted(dataset_data_key(dataset), dataset.id, fh)


def _scan_passes(
    dataset: Dataset, scanner: Scanner, claimed: Claim, probe: Probe, sha256: Any
) -> tuple[PendingScan, Detected]:
    """Stream the file to the scanner, and the format the probe saw on the way; the
    verdict of the last pass may still be coming."""
    with _plaintext(dataset) as plaintext:
        pending = scanner.start(probe.watch(_heartbeat(plaintext, claimed, sha256)))
    found = probe.result()
    watch = partial(_heartbeat, claimed=claimed)
    settle = partial(_result, claimed=claimed)
    return _text_pass(dataset, scanner, pending, found.encoding, watch, settle), found


def _probe(dataset: Dataset, claimed: Claim, probe: Probe, sha256: Any) -> Detected:
    """Read the file for its format (and its SHA-256, for a resumable upload) alone."""
    with _plaintext(dataset) as plaintext:
        deque(probe.watch(_heartbeat(plaintext, claimed, sha256)), maxlen=0)
    return probe.result()


def _stream(dataset: Dataset, scanner: Scanner, encoding: str, watch: Watch) -> PendingScan:
    """:func:`_scan_passes` for a format already known, in the stream's thread: no probe,
    no heartbeat (the ingest beside it keeps the dataset's)."""
    with _plaintext(dataset) as plaintext:
        pending = scanner.start(watch(plaintext))
    return _text_pass(dataset, scanner, pending, encoding, watch, _verdict)


def _text_pass(
    dataset: Dataset,
    scanner: Scanner,
    pending: PendingScan,
    encoding: str,
    watch: Watch,
    settle: Callable[[PendingScan], ScanResult],
) -> PendingScan:
    """The scanner must see what the ingest will read: a file not in UTF-8 clean in its
    own bytes goes again as UTF-8 text (signatures in UTF-16 text hide between NULs)."""
    if encoding == "utf-8":
        return pending
    result = settle(pending)
    if not result.clean:
        return Settled(result)
    with _plaintext(dataset) as plaintext:
        return scanner.start(watch(Utf8Chunks(plaintext, encoding, errors="replace")))


def _verdict(pending: PendingScan) -> ScanResult:
    try:
        return pending.result()
    finally:
        pending.close()


def _result(pending: PendingScan, claimed: Claim) -> ScanResult:
    """The verdict, the heartbeat kept fresh while the scanner decides."""
    try:
        while not pending.ready(HEARTBEAT_EVERY_SECONDS):
            claimed.heartbeat()  # LostOwnership once cancelled or deleted
        return pending.result()
    finally:
        pending.close()


def _ingest_meanwhile(
    dataset: Dataset,
    scanned: Claim,
    scanner_name: str,
    pending: PendingScan,
    found: Detected,
    started: float,
    digest: dict[str, Any],
) -> ScanOutcome:
    """Run the ingest while the scanner decides; the verdict settles it (module docstring)."""
    try:
        if not scanned.update(
            status=DatasetStatus.QUEUED, heartbeat_at=timezone.now(), **_format(found), **digest
        ):
            return ScanOutcome("stopped")
        claimed = ingest_claim(dataset_id=dataset.id, verdict_pending=True)
        if claimed is None:
            return ScanOutcome("stopped")
        try:
            outcome = ingest_claimed(claimed, _Verdict(pending, dataset, scanner_name, started))
        except _NotClean as exc:
            return _reject(dataset, claimed, scanner_name, exc.result)
        except ScannerUnavailable as exc:
            return _unavailable(claimed, str(exc), owner_id=dataset.owner_id, scan=scanned)
        except LostOwnership:
            return ScanOutcome("stopped")
        except Exception:
            # Scanned again, then resumed; once the verdict is recorded, resumed at once.
            if not claimed.release(to=DatasetStatus.PENDING, only=VERDICT_PENDING):
                claimed.release()
            raise
        return ScanOutcome(outcome.status)
    finally:
        pending.close()


class _NotClean(Exception):
    def __init__(self, result: ScanResult) -> None:
        super().__init__(result.signature)
        self.result = result


class _Verdict:
    """A scan in flight as the ingest sees it (ingest.Verdict): the clean verdict until
    a transaction recording it (with its audit event; then the log line and the metric)
    commits; :class:`_NotClean` for a finding and ScannerUnavailable for no verdict."""

    def __init__(
        self, pending: PendingScan, dataset: Dataset, scanner_name: str, started: float
    ) -> None:
        self._pending = pending
        self._dataset = dataset
        self._scanner = scanner_name
        self._started = started
        self._recorded = False

    def poll(self) -> CleanVerdict | None:
        return self._settle() if self._pending.ready(0) else None

    def wait(self, heartbeat: Callable[[], None]) -> CleanVerdict:
        while not self._pending.ready(HEARTBEAT_EVERY_SECONDS):
            heartbeat()
        return self._settle()

    def _settle(self) -> CleanVerdict:
        result = self._pending.result()
        if not result.clean:
            raise _NotClean(result)
        if self._recorded:
            return CleanVerdict({}, lambda: None)
        elapsed = time.monotonic() - self._started
        return CleanVerdict({"scanner": self._scanner}, partial(self._record, elapsed))

    def _record(self, elapsed: float) -> None:
        """In the transaction that records the verdict; given once it commits (a batch
        that carried it and rolled back leaves it to the next one)."""
        dataset, scanner_name = self._dataset, self._scanner
        audit_record(
            AuditAction.SCAN_CLEAN,
            user_id=dataset.owner_id,
            dataset_id=dataset.id,
            scanner=scanner_name,
        )

        def recorded() -> None:
            self._recorded = True
            metrics.record_scan("clean", scanner_name)
            logger.info("scan of %s clean (%s, %.2f s)", dataset.id, scanner_name, elapsed)

        transaction.on_commit(recorded)


def _format(found: Detected) -> dict[str, Any]:
    return {
        "encoding": found.encoding,
        "encoding_detected": found.encoding_detected,
        "delimiter": found.delimiter,
        "delimiter_detected": found.delimiter_detected,
    }


def _heartbeat(chunks: Iterable[bytes], claimed: Claim, sha256: Any = None) -> Iterator[bytes]:
    last = time.monotonic()
    for chunk in chunks:
        if sha256 is not None:
            sha256.update(chunk)
        if time.monotonic() - last > HEARTBEAT_EVERY_SECONDS:
            claimed.heartbeat()  # LostOwnership once cancelled or deleted
            last = time.monotonic()
        yield chunk


def _clean(
    dataset: Dataset,
    claimed: Claim,
    scanner_name: str,
    elapsed: float,
    on_clean: Callable[[uuid.UUID], None] | None,
    found: Detected,
) -> ScanOutcome:
    with transaction.atomic():
        if not claimed.update(
            status=DatasetStatus.QUEUED,
            scanner=scanner_name,
            heartbeat_at=timezone.now(),
            **_format(found),
        ):
            return ScanOutcome("stopped")
        if on_clean is not None:
            on_clean(dataset.id)
        audit_record(
            AuditAction.SCAN_CLEAN,
            user_id=dataset.owner_id,
            dataset_id=dataset.id,
            scanner=scanner_name,
        )
    metrics.record_scan("clean", scanner_name)
    logger.info("scan of %s clean (%s, %.2f s)", dataset.id, scanner_name, elapsed)
    return ScanOutcome(DatasetStatus.QUEUED)


def _reject(dataset: Dataset, claimed: Claim, scanner_name: str, result: ScanResult) -> ScanOutcome:
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
        if not claimed.update(
            status=DatasetStatus.REJECTED,
            error=error,
            scanner=scanner_name,
            finished_at=timezone.now(),
        ):
            return ScanOutcome("stopped")
        rows_delete(dataset_id=dataset.id)  # those of an ingest that ran before the verdict
        storage_key = dataset.storage_key
        # Robust: a store outage leaves the ciphertext until the dataset is deleted.
        transaction.on_commit(lambda: dataset_storage().delete(storage_key), robust=True)
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


def _unavailable(claimed: Claim, reason: str, *, owner_id: int, scan: Claim) -> ScanOutcome:
    """No verdict in scan attempt ``scan.attempt`` (``claimed`` is the run that owns the
    dataset now: the scan, or the ingest that ran meanwhile)."""
    metrics.record_scan("unavailable", get_scanner().name)
    if scan.attempt >= settings.CSVAULT_SCAN_MAX_ATTEMPTS:
        # The reason (it names the scanner's address) goes to the log, not to the user.
        logger.warning("scan of %s: scanner unavailable, giving up: %s", claimed.dataset_id, reason)
        _fail(
            claimed,
            {
                "code": "scanner_unavailable",
                "message": f"The malware scanner was unavailable for {scan.attempt} attempts; "
                "the file was not ingested. Upload it again later.",
            },
        )
        audit_record(
            AuditAction.SCAN_FAILED,
            user_id=owner_id,
            dataset_id=claimed.dataset_id,
            reason="scanner_unavailable",
        )
        return ScanOutcome(DatasetStatus.FAILED)
    logger.warning(
        "scan of %s: scanner unavailable (attempt %d): %s",
        claimed.dataset_id,
        scan.attempt,
        reason,
    )
    claimed.release(to=DatasetStatus.PENDING)  # rows an ingest left stay, unreadable
    raise ScanRetry(reason)


def _fail(claimed: Claim, error: dict[str, object]) -> None:
    with transaction.atomic():
        if claimed.fail(error):
            rows_delete(dataset_id=claimed.dataset_id)
    logger.warning("scan of %s failed: %s", claimed.dataset_id, error["code"])


def scan_retry_delay(retries: int) -> float:
    """Seconds before retry number ``retries + 1``: doubling from the base, at most 5 minutes."""
    return float(min(settings.CSVAULT_SCAN_RETRY_SECONDS * (2**retries), 300.0))
