"""The ingest service: decrypt the stored file, parse it, write encrypted rows.

Resumable and idempotent. Each batch of rows is committed in one transaction
together with the checkpoint (``rows_processed``) and the heartbeat; that
transaction first re-checks, with a conditional UPDATE, that this run still
owns the dataset (status ``processing`` and the same ``attempts`` value), so a
cancelled dataset or a run superseded after a stall writes nothing more. A
restarted run skips the rows before the checkpoint, and the composite primary
key rejects any row written twice.
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.core.files.storage import storages
from django.db import close_old_connections, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from csvault.core import metrics
from csvault.crypto.rows import RowCipher
from csvault.crypto.stream import StreamDecryptError, open_decrypted
from csvault.datasets.csvreader import CsvDataError, CsvLimits, CsvStream, open_csv
from csvault.datasets.fastcsv import open_fast_blocks
from csvault.datasets.keys import HEADER_ROW, dataset_data_key
from csvault.datasets.models import Dataset, DatasetStatus
from csvault.datasets.rowstore import (
    BackgroundWriter,
    RowBatch,
    rows_batch,
    rows_delete,
    rows_write_batch,
)

logger = logging.getLogger(__name__)

# Only scanned files: ``queued`` is set by a clean scan verdict (see scan.py).
CLAIMABLE = (DatasetStatus.QUEUED,)
HEARTBEAT_EVERY_SECONDS = 5.0
# A batch is committed at CSVAULT_INGEST_BATCH_ROWS rows or this many bytes of
# ciphertext, whichever comes first: memory stays bounded whatever the row size.
BATCH_BYTES = 8 * 1_048_576


class LostOwnership(Exception):
    """The dataset was cancelled, deleted or taken over by another run."""


@dataclass(frozen=True)
class IngestOutcome:
    status: str
    rows: int = 0


def csv_limits() -> CsvLimits:
    return CsvLimits(
        max_columns=settings.CSVAULT_MAX_COLUMNS,
        max_field_bytes=settings.CSVAULT_MAX_FIELD_BYTES,
        max_rows=settings.CSVAULT_MAX_ROWS,
    )


def dataset_claim(*, dataset_id: uuid.UUID) -> int | None:
    """Take the dataset for one ingest run; return its attempt number, or None.

    Claimable: waiting datasets, and processing ones whose heartbeat is older
    than ``CSVAULT_STALL_SECONDS`` (their worker died). A dataset that used up
    ``CSVAULT_MAX_ATTEMPTS`` is failed instead, so a file that kills its
    worker every time cannot loop forever.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CSVAULT_STALL_SECONDS)
    with transaction.atomic():
        claimed = (
            Dataset.objects.for_write(dataset_id)
            .filter(
                Q(status__in=CLAIMABLE) | Q(status=DatasetStatus.PROCESSING, heartbeat_at__lt=stale)
            )
            .update(
                status=DatasetStatus.PROCESSING,
                attempts=F("attempts") + 1,
                heartbeat_at=now,
                started_at=Coalesce(F("started_at"), now),
            )
        )
        if not claimed:
            return None
        attempt = Dataset.objects.values_list("attempts", flat=True).get(id=dataset_id)
    if attempt > settings.CSVAULT_MAX_ATTEMPTS:
        _finish_failed(
            dataset_id,
            attempt,
            {
                "code": "too_many_attempts",
                "message": f"Ingest was started {attempt - 1} times without finishing; "
                "giving up. The file may crash the worker; contact the operator.",
            },
        )
        return None
    return attempt


def dataset_ingest(*, dataset_id: uuid.UUID) -> IngestOutcome:
    """Run (or resume) the ingest of one dataset; safe to call more than once."""
    attempt = dataset_claim(dataset_id=dataset_id)
    if attempt is None:
        logger.info("ingest of %s skipped: not claimable", dataset_id)
        return IngestOutcome("skipped")
    dataset = Dataset.objects.get(id=dataset_id)
    try:
        return _ingest(dataset, attempt)
    except LostOwnership:
        logger.info("ingest of %s stopped: no longer owned by attempt %s", dataset_id, attempt)
        return IngestOutcome("stopped")
    except Exception:
        # Infrastructure trouble: hand the dataset back so a retry can claim it
        # at once; if even that fails, the stale heartbeat lets the reaper do it.
        _release(dataset_id, attempt)
        raise


def _ingest(dataset: Dataset, attempt: int) -> IngestOutcome:
    data_key = dataset_data_key(dataset)
    cipher = RowCipher(data_key, dataset.id, attempt)
    checkpoint = dataset.rows_processed
    batch_rows = settings.CSVAULT_INGEST_BATCH_ROWS
    started = time.monotonic()
    storage = storages["datasets"]
    gc_was_enabled = gc.isenabled()
    try:
        with storage.open(dataset.storage_key, "rb") as fh, ExitStack() as files:
            stream = open_csv(
                open_decrypted(data_key, dataset.id, fh),
                delimiter=dataset.delimiter,
                has_header=dataset.has_header,
                limits=csv_limits(),
            )
            _save_header(dataset, attempt, cipher, stream.columns)
            fast = None
            if settings.CSVAULT_FAST_CSV:
                # The C fast path reads the file a second time, from its own handle.
                fast = open_fast_blocks(
                    open_decrypted(
                        data_key,
                        dataset.id,
                        files.enter_context(storage.open(dataset.storage_key, "rb")),
                    ),
                    columns=stream.columns,
                    has_header=dataset.has_header,
                    delimiter=dataset.delimiter,
                    encoding=stream.encoding,
                    limits=csv_limits(),
                )
            # The hot path (docs/performance.md): this thread parses rows and seals
            # them into blocks, and frames those into the COPY stream of the current
            # batch; the writer thread meanwhile commits the previous batch. A batch is
            # committed at batch_rows rows or BATCH_BYTES. The C fast path reads as far
            # as it can (usually the whole file, with the GIL released); the reference
            # reader reads the rest, if any, skipping the rows already done.
            # The cyclic GC is paused: the reference reader makes millions of
            # short-lived lists without cycles, and re-scanning them cost about a
            # sixth of the CPU time.
            commit = partial(_commit_batch, dataset.id, attempt)
            gc.disable()
            with BackgroundWriter() as writer:
                heartbeat = _Heartbeat(writer, partial(_touch, dataset.id, attempt))
                batch: RowBatch | None = None
                row_number = 0
                if fast is not None:
                    while (
                        row_number < checkpoint
                        and (got := fast.read(min(batch_rows, checkpoint - row_number)))
                        and got[1]
                    ):
                        row_number += sum(got[1])  # resuming: committed already
                        heartbeat.beat()
                    # (A decline before the checkpoint leaves it all to the reference reader.)
                    while row_number >= checkpoint:
                        got = fast.read(batch_rows - (batch.count if batch else 0))
                        if not got or not got[1]:
                            break
                        plaintexts, counts = got
                        if batch is None:
                            batch = rows_batch(
                                dataset_id=dataset.id, first_row_number=row_number + 1
                            )
                        batch.add_blocks(cipher, plaintexts, counts)
                        row_number += sum(counts)
                        if batch.count >= batch_rows or batch.nbytes >= BATCH_BYTES:
                            writer.submit(partial(commit, batch, row_number, fast.bytes_consumed))
                            batch = None
                if fast is not None and fast.finished:
                    consumed = fast.bytes_consumed
                else:
                    row_number, batch = _ingest_reference(
                        dataset.id,
                        stream,
                        cipher,
                        writer,
                        heartbeat,
                        commit,
                        batch,
                        skip=max(checkpoint, row_number),
                        batch_rows=batch_rows,
                    )
                    consumed = stream.bytes_consumed
                writer.submit(partial(commit, batch, row_number, consumed, complete=True))
    except CsvDataError as exc:
        _finish_failed(dataset.id, attempt, exc.as_dict())
        return IngestOutcome(DatasetStatus.FAILED, 0)
    except StreamDecryptError as exc:
        _finish_failed(dataset.id, attempt, file_corrupt_error(exc))
        return IngestOutcome(DatasetStatus.FAILED, 0)
    finally:
        if gc_was_enabled:
            gc.enable()
    metrics.record_ingest(rows=row_number, seconds=time.monotonic() - started)
    logger.info(
        "ingest of %s completed: %d rows in %.2f s (attempt %d)",
        dataset.id,
        row_number,
        time.monotonic() - started,
        attempt,
    )
    return IngestOutcome(DatasetStatus.COMPLETED, row_number)


class _Heartbeat:
    """Keeps the dataset's heartbeat fresh while a run skips rows committed before."""

    def __init__(self, writer: BackgroundWriter, touch: Callable[[], None]) -> None:
        self._writer = writer
        self._touch = touch
        self._last = time.monotonic()

    def beat(self) -> None:
        if time.monotonic() - self._last > HEARTBEAT_EVERY_SECONDS:
            self._writer.submit(self._touch)
            self._last = time.monotonic()


def _ingest_reference(
    dataset_id: uuid.UUID,
    stream: CsvStream,
    cipher: RowCipher,
    writer: BackgroundWriter,
    heartbeat: _Heartbeat,
    commit: Callable[..., None],
    batch: RowBatch | None,
    *,
    skip: int,
    batch_rows: int,
) -> tuple[int, RowBatch | None]:
    """Read the file with the reference reader, skipping its first ``skip`` rows (committed,
    or already in ``batch``), into batches as the fast path does; returns the number of
    rows in the file and the batch not yet submitted.

    Each step reads about 1 MiB of the file (at most 4096 rows; it starts at one row and
    grows with the rows per MiB seen so far): enough that per-step overhead vanishes,
    little enough to keep few parsed rows in memory and to hand the GIL to the writer
    every few milliseconds.
    """
    row_number = 0
    step = 1
    while rows := stream.read_rows(min(step, batch_rows - (batch.count if batch else 0))):
        first = row_number + 1
        row_number += len(rows)
        per_mib = row_number * 1_048_576 // max(1, stream.bytes_consumed)
        step = min(4096, max(1, per_mib))
        if row_number <= skip:
            heartbeat.beat()
            continue
        if first <= skip:
            rows = rows[skip + 1 - first :]
            first = skip + 1
        if batch is None:
            batch = rows_batch(dataset_id=dataset_id, first_row_number=first)
        batch.add_rows(cipher, rows)
        if batch.count >= batch_rows or batch.nbytes >= BATCH_BYTES:
            writer.submit(partial(commit, batch, row_number, stream.bytes_consumed))
            batch = None
    return row_number, batch


def file_corrupt_error(exc: StreamDecryptError) -> dict[str, object]:
    """The dataset error for a stored file that fails its integrity check."""
    return {
        "code": "file_corrupt",
        "message": f"The stored file failed its integrity check: {exc}",
    }


def _owned(dataset_id: uuid.UUID, attempt: int) -> QuerySet[Dataset]:
    return Dataset.objects.for_write(dataset_id).filter(
        status=DatasetStatus.PROCESSING, attempts=attempt
    )


def _save_header(dataset: Dataset, attempt: int, cipher: RowCipher, columns: list[str]) -> None:
    with transaction.atomic():
        if not _owned(dataset.id, attempt).update(
            columns_ciphertext=cipher.encrypt(HEADER_ROW, columns),
            column_count=len(columns),
            heartbeat_at=timezone.now(),
        ):
            raise LostOwnership


def _commit_batch(
    dataset_id: uuid.UUID,
    attempt: int,
    rows: RowBatch | None,
    last_row: int,
    bytes_consumed: int,
    *,
    complete: bool = False,
) -> None:
    """Write a batch and move the checkpoint in one transaction (and finish, if last)."""
    now = timezone.now()
    fields: dict[str, object] = {
        "heartbeat_at": now,
        "bytes_processed": Greatest(F("bytes_processed"), bytes_consumed),
    }
    if rows is not None and rows.count:
        fields["rows_processed"] = last_row
    if complete:
        fields.update(
            status=DatasetStatus.COMPLETED,
            row_count=last_row,
            rows_processed=last_row,
            bytes_processed=F("size"),
            finished_at=now,
        )
    with transaction.atomic():
        # The UPDATE comes first: it checks ownership and locks the dataset
        # row, so a concurrent cancel or delete waits for this batch.
        if not _owned(dataset_id, attempt).update(**fields):
            raise LostOwnership
        if rows is not None:
            rows_write_batch(rows)


def _touch(dataset_id: uuid.UUID, attempt: int) -> None:
    if not _owned(dataset_id, attempt).update(heartbeat_at=timezone.now()):
        raise LostOwnership


def _finish_failed(dataset_id: uuid.UUID, attempt: int, error: dict[str, object]) -> None:
    """Fail the dataset and drop any rows it got: a failed dataset shows nothing."""
    with transaction.atomic():
        if _owned(dataset_id, attempt).update(
            status=DatasetStatus.FAILED, error=error, finished_at=timezone.now()
        ):
            rows_delete(dataset_id=dataset_id)
    logger.info("ingest of %s failed: %s", dataset_id, error.get("code"))


def _release(dataset_id: uuid.UUID, attempt: int) -> None:
    try:
        close_old_connections()  # drop a connection the error left broken
        _owned(dataset_id, attempt).update(status=DatasetStatus.QUEUED)
    except Exception:
        logger.warning("could not release %s after an error", dataset_id, exc_info=True)
