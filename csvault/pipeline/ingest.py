"""The ingest service: decrypt the stored file, parse it, write encrypted rows.

Resumable and idempotent. Each batch of rows is committed in one transaction
together with the checkpoint (``rows_processed``) and the heartbeat; that
transaction first re-checks, with a conditional UPDATE, that this run still
owns the dataset (claims.py), so a cancelled dataset or a run superseded after
a stall writes nothing more. A restarted run skips the rows before the
checkpoint, and the composite primary key rejects any row written twice.

The hot path (docs/performance.md): an :class:`IngestRun` reads the file in two
phases. The fast phase (:meth:`IngestRun.fast_phase`) takes block plaintexts
from the C parser (csvault/csvio/fastcsv.py), usually for the whole file; the
reference phase (:meth:`IngestRun.reference_phase`) reads the rest, if any, with
the reference reader, which takes over at exactly the row the C parser declined.
Either way this thread seals blocks and frames them into the COPY stream of the
current batch while the writer thread (writer.py) commits the previous one.
"""

from __future__ import annotations

import gc
import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from csvault.core import metrics
from csvault.core.storage import dataset_storage
from csvault.crypto.rows import RowCipher
from csvault.crypto.stream import StreamDecryptError, open_decrypted
from csvault.csvio.errors import CsvDataError
from csvault.csvio.fastcsv import FastBlocks, open_fast_blocks
from csvault.csvio.limits import CsvLimits
from csvault.csvio.reader import CsvStream, open_csv
from csvault.csvio.tail import Tail
from csvault.csvio.transcode import Utf8Chunks
from csvault.datasets.keys import HEADER_ROW, PROFILE_ROW, WARNINGS_ROW, dataset_data_key
from csvault.datasets.models import Dataset, DatasetStatus
from csvault.pipeline.claims import (
    HEARTBEAT_EVERY_SECONDS,
    INGEST,
    VERDICT_PENDING,
    Claim,
    LostOwnership,
    attempts_exhausted,
    claim,
    file_corrupt_error,
)
from csvault.pipeline.fileformat import file_format, with_delimiter_hint
from csvault.pipeline.profiling import BackgroundProfile
from csvault.pipeline.rowstore import RowBatch, rows_batch, rows_delete, rows_write_batch
from csvault.pipeline.verdict import CleanVerdict, Verdict
from csvault.pipeline.writer import BackgroundWriter

logger = logging.getLogger(__name__)

# A batch is committed at CSVAULT_INGEST_BATCH_ROWS rows or this many bytes of
# ciphertext, whichever comes first: memory stays bounded whatever the row size.
BATCH_BYTES = 8 * 1_048_576


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


def dataset_ingest(*, dataset_id: uuid.UUID) -> IngestOutcome:
    """Run (or resume) the ingest of one dataset; safe to call more than once.

    Claimable: queued datasets (a clean scan verdict), and processing ones whose
    worker died. A dataset past ``CSVAULT_MAX_ATTEMPTS`` runs is failed instead,
    so a file that kills its worker every time cannot loop forever.
    """
    claimed = ingest_claim(dataset_id=dataset_id)
    if claimed is None:
        return IngestOutcome("skipped")
    try:
        return ingest_claimed(claimed)
    except LostOwnership:
        return IngestOutcome("stopped")
    except Exception:
        # Infrastructure trouble: hand the dataset back so a retry can claim it
        # at once; if even that fails, the stale heartbeat lets the reaper do it.
        claimed.release()
        raise


def ingest_claim(*, dataset_id: uuid.UUID, verdict_pending: bool = False) -> Claim | None:
    """Claim the ingest of a dataset with a clean verdict or, with ``verdict_pending``,
    of one whose scan is still deciding (scan.py); None if not claimable or failed
    for too many attempts."""
    claimed = claim(
        INGEST,
        dataset_id=dataset_id,
        only=VERDICT_PENDING if verdict_pending else ~VERDICT_PENDING,
        started_at=Coalesce(F("started_at"), timezone.now()),
    )
    if claimed is not None:
        exhausted = attempts_exhausted(
            claimed,
            most=settings.CSVAULT_MAX_ATTEMPTS,
            what="Ingest",
            advice="The file may crash the worker; contact the operator.",
        )
        if exhausted is not None:
            _fail(claimed, exhausted)
            claimed = None
    if claimed is None:
        logger.info("ingest of %s skipped: not claimable", dataset_id)
    return claimed


def ingest_claimed(claimed: Claim, verdict: Verdict | None = None) -> IngestOutcome:
    """The claimed run: completed, or failed on the file's content. Raises
    :class:`LostOwnership` when the dataset was taken away, and whatever ``verdict``
    raises; other errors propagate for the caller to hand the dataset back."""
    dataset_id = claimed.dataset_id
    dataset = Dataset.objects.get(id=dataset_id)
    started = time.monotonic()
    try:
        try:
            rows = _ingest(dataset, claimed, verdict)
        except (CsvDataError, StreamDecryptError) as exc:
            # A finding outranks what the content got wrong: the verdict decides first.
            clean = verdict.wait(claimed.heartbeat) if verdict is not None else None
            error = exc.as_dict() if isinstance(exc, CsvDataError) else file_corrupt_error(exc)
            _fail(claimed, error, clean)
            return IngestOutcome(DatasetStatus.FAILED, 0)
    except LostOwnership:
        logger.info(
            "ingest of %s stopped: no longer owned by attempt %s", dataset_id, claimed.attempt
        )
        raise
    elapsed = time.monotonic() - started
    metrics.record_ingest(rows=rows, seconds=elapsed)
    logger.info(
        "ingest of %s completed: %d rows in %.2f s (attempt %d)",
        dataset_id,
        rows,
        elapsed,
        claimed.attempt,
    )
    return IngestOutcome(DatasetStatus.COMPLETED, rows)


def _ingest(dataset: Dataset, claimed: Claim, verdict: Verdict | None) -> int:
    """Read the whole file into stored blocks and complete the dataset; its row count."""
    data_key = dataset_data_key(dataset)
    storage = dataset_storage()

    def plaintext(fh: File) -> Iterator[bytes]:
        return open_decrypted(data_key, dataset.id, fh)

    found = file_format(dataset, plaintext)
    with storage.open(dataset.storage_key, "rb") as fh, ExitStack() as files:
        reference_tail = Tail()
        try:
            stream = open_csv(
                reference_tail.watch(plaintext(fh)),
                delimiter=found.delimiter,
                has_header=dataset.has_header,
                limits=csv_limits(),
                encoding=found.encoding,
            )
        except CsvDataError as exc:
            raise with_delimiter_hint(exc, dataset, found, plaintext) from None
        cipher = RowCipher(
            data_key, dataset.id, claimed.attempt, compress=settings.CSVAULT_COMPRESS_ROWS
        )
        header = {
            "columns_ciphertext": cipher.encrypt(HEADER_ROW, stream.columns),
            "column_count": len(stream.columns),
        }
        if verdict is None:
            claimed.write(**header, heartbeat_at=timezone.now())
            header = {}
        # else nothing of the file shows before its clean verdict: the header comes with it
        fast = None
        fast_raw = Tail()  # the raw bytes the fast path pulled: how many, and the last ones
        if settings.CSVAULT_FAST_CSV and not stream.dropped_columns:
            # The C fast path reads the file a second time, from its own handle, as UTF-8.
            chunks: Iterable[bytes] = fast_raw.watch(
                plaintext(files.enter_context(storage.open(dataset.storage_key, "rb")))
            )
            if found.encoding != "utf-8":
                chunks = Utf8Chunks(chunks, found.encoding)
            fast = open_fast_blocks(
                chunks,
                columns=stream.header_as_read,
                has_header=dataset.has_header,
                delimiter=found.delimiter,
                encoding="utf-8",
                limits=csv_limits(),
                block_bytes=cipher.block_target_bytes,
            )
        # A decimal comma is read as one in ;-separated files only (elsewhere 1,234 is
        # as likely a thousands separator).
        profiler = BackgroundProfile(len(stream.columns), decimal_comma=found.delimiter == ";")
        with _gc_paused(), profiler, BackgroundWriter() as writer:
            run = IngestRun(dataset, claimed, cipher, writer, profiler, verdict, header)
            try:
                if fast is not None:
                    run.fast_phase(fast, fast_raw)
                if fast is not None and fast.finished:
                    consumed, tail = fast_raw.size, fast_raw
                else:
                    run.reference_phase(stream)
                    consumed, tail = stream.bytes_consumed, reference_tail
            except CsvDataError as exc:
                raise with_delimiter_hint(exc, dataset, found, plaintext) from None
            warnings = [*stream.warnings, *tail.blank_line_warning(found.encoding)]
            run.finish(
                consumed,
                warnings=cipher.encrypt(WARNINGS_ROW, [json.dumps(warnings)]),
                profile=cipher.encrypt(PROFILE_ROW, [json.dumps(profiler.result(stream.columns))]),
            )
    return run.row_number


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC: the reference reader makes millions of short-lived lists
    without cycles, and re-scanning them cost about a sixth of the CPU time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class IngestRun:
    """The state of one ingest run between the two phases: the rows read so far,
    the batch being filled, and the writer thread that commits full batches.

    A batch is committed at ``CSVAULT_INGEST_BATCH_ROWS`` rows or
    :data:`BATCH_BYTES`; rows up to the dataset's checkpoint (committed by an
    earlier attempt) are read but skipped.
    """

    def __init__(
        self,
        dataset: Dataset,
        claimed: Claim,
        cipher: RowCipher,
        writer: BackgroundWriter,
        profiler: BackgroundProfile,
        verdict: Verdict | None = None,
        with_verdict: dict[str, Any] | None = None,
    ) -> None:
        self.dataset_id = dataset.id
        # Every row of the file goes through the profile once per run, those skipped
        # (committed by an earlier run) included.
        self.profiler = profiler
        self.claimed = claimed
        self.cipher = cipher
        self.writer = writer
        self.checkpoint = dataset.rows_processed
        self.batch_rows: int = settings.CSVAULT_INGEST_BATCH_ROWS
        self.row_number = 0  # rows of the file read so far (stored or skipped)
        self.batch: RowBatch | None = None
        self._last_beat = time.monotonic()
        # A verdict still to come, and the fields written only with it.
        self.verdict = verdict
        self.with_verdict = with_verdict or {}

    def room(self) -> int:
        """Rows the current batch can still take."""
        return self.batch_rows - (self.batch.count if self.batch else 0)

    def fast_phase(self, fast: FastBlocks, raw: Tail) -> None:
        """Read rows as block plaintexts from the C parser until the end or its decline;
        ``raw`` counts the file's bytes read so far (before any transcoding)."""
        while (
            self.row_number < self.checkpoint
            and (got := fast.read(min(self.batch_rows, self.checkpoint - self.row_number)))
            and got[1]
        ):
            self.profiler.feed_blocks(got[0])
            self.row_number += sum(got[1])  # resuming: committed already
            self._beat()
        # (A decline before the checkpoint leaves it all to the reference reader.)
        while self.row_number >= self.checkpoint:
            got = fast.read(self.room())
            if not got or not got[1]:
                return
            plaintexts, counts = got
            self.profiler.feed_blocks(plaintexts)
            self._open_batch(self.row_number + 1).add_blocks(self.cipher, plaintexts, counts)
            self.row_number += sum(counts)
            self._submit_if_full(raw.size)

    def reference_phase(self, stream: CsvStream) -> None:
        """Read the file with the reference reader, skipping the rows already done
        (committed, or read by the fast phase), into batches as the fast phase does.

        Each step reads about 1 MiB of the file (at most 4096 rows; it starts at one
        row and grows with the rows per MiB seen so far): enough that per-step overhead
        vanishes, little enough to keep few parsed rows in memory and to hand the GIL
        to the writer every few milliseconds.
        """
        skip = max(self.checkpoint, self.row_number)
        profiled = self.row_number  # the fast phase profiled the rows it read
        row_number = 0
        step = 1
        while rows := stream.read_rows(min(step, self.room())):
            first = row_number + 1
            row_number += len(rows)
            per_mib = row_number * 1_048_576 // max(1, stream.bytes_consumed)
            step = min(4096, max(1, per_mib))
            if row_number > profiled:
                self.profiler.feed_rows(rows[max(0, profiled + 1 - first) :])
            if row_number <= skip:
                self._beat()
                continue
            if first <= skip:
                rows = rows[skip + 1 - first :]
                first = skip + 1
            self._open_batch(first).add_rows(self.cipher, rows)
            self.row_number = row_number
            self._submit_if_full(stream.bytes_consumed)
        self.row_number = row_number

    def submit(self, bytes_consumed: int, **final: bytes) -> None:
        """Hand the current batch (and the checkpoint) to the writer thread; with
        ``final`` fields (see :meth:`finish`), the last one, which completes the dataset.

        A scan verdict still to come is looked at (waited for, before the last batch):
        the batch after it came records it, and a finding stops the run here.
        """
        clean = self._clean_verdict(wait=bool(final))
        self.writer.submit(
            partial(
                _commit_batch,
                self.claimed,
                self.batch,
                self.row_number,
                bytes_consumed,
                final=final or None,
                clean=clean,
            )
        )
        self.batch = None

    def _clean_verdict(self, *, wait: bool) -> CleanVerdict | None:
        if self.verdict is None:
            return None
        if wait:
            clean = self.verdict.wait(lambda: self.writer.submit(self.claimed.heartbeat))
        elif (polled := self.verdict.poll()) is not None:
            clean = polled
        else:
            return None
        self.verdict = None
        return CleanVerdict({**clean.fields, **self.with_verdict}, clean.record)

    def finish(self, bytes_consumed: int, *, warnings: bytes, profile: bytes) -> None:
        """Submit the last batch with the encrypted warnings and profile: completed."""
        self.submit(bytes_consumed, warnings_ciphertext=warnings, profile_ciphertext=profile)

    def _open_batch(self, first_row_number: int) -> RowBatch:
        if self.batch is None:
            self.batch = rows_batch(dataset_id=self.dataset_id, first_row_number=first_row_number)
        return self.batch

    def _submit_if_full(self, bytes_consumed: int) -> None:
        batch = self.batch
        if batch is not None and (batch.count >= self.batch_rows or batch.nbytes >= BATCH_BYTES):
            self.submit(bytes_consumed)

    def _beat(self) -> None:
        """Keep the heartbeat fresh while skipping rows committed before."""
        if time.monotonic() - self._last_beat > HEARTBEAT_EVERY_SECONDS:
            self.writer.submit(self.claimed.heartbeat)
            self._last_beat = time.monotonic()


def _commit_batch(
    claimed: Claim,
    rows: RowBatch | None,
    last_row: int,
    bytes_consumed: int,
    *,
    final: dict[str, bytes] | None = None,
    clean: CleanVerdict | None = None,
) -> None:
    """Write a batch and move the checkpoint in one transaction; the last one (with its
    ``final`` fields) completes the dataset. A ``clean`` verdict is recorded with it."""
    now = timezone.now()
    fields: dict[str, object] = {
        "heartbeat_at": now,
        "bytes_processed": Greatest(F("bytes_processed"), bytes_consumed),
    }
    if rows is not None and rows.count:
        fields["rows_processed"] = last_row
    if final is not None:
        fields.update(
            final,
            status=DatasetStatus.COMPLETED,
            row_count=last_row,
            rows_processed=last_row,
            bytes_processed=F("size"),
            finished_at=now,
        )
    if clean is not None:
        fields.update(clean.fields)
    with transaction.atomic():
        # The UPDATE comes first: it checks ownership and locks the dataset
        # row, so a concurrent cancel or delete waits for this batch.
        claimed.write(**fields)
        if clean is not None:
            clean.record()
        if rows is not None:
            rows_write_batch(rows)


def _fail(claimed: Claim, error: dict[str, object], clean: CleanVerdict | None = None) -> None:
    """Fail the dataset and drop any rows it got: a failed dataset shows nothing."""
    with transaction.atomic():
        if claimed.fail(error, **(clean.fields if clean else {})):
            if clean is not None:
                clean.record()
            rows_delete(dataset_id=claimed.dataset_id)
    logger.info("ingest of %s failed: %s", claimed.dataset_id, error.get("code"))
