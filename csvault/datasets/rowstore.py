"""Bulk writes and reads of encrypted rows, the fastest way each database offers.

PostgreSQL gets binary ``COPY`` (about 440k rows/s here, against 23k for
``bulk_create``); SQLite gets ``executemany`` in the caller's transaction.

The ingest prepares a batch with :func:`rows_batch` and ``RowBatch.add`` (CPU
work: the COPY stream is framed by C-level ``map``/``join`` over many rows at a
time, no Python code per row) outside the transaction, then writes it with
:func:`rows_write_batch` inside the transaction, where the time goes to the
database.
"""

from __future__ import annotations

import queue
import struct
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from itertools import chain, repeat
from types import TracebackType

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections

from csvault.crypto.rows import RowCipher
from csvault.datasets.models import Dataset, ProcessedData

_TABLE = ProcessedData._meta.db_table
_COPY_SQL = f"COPY {_TABLE} (dataset_id, row_number, data) FROM STDIN (FORMAT BINARY)"
_INSERT_SQL = f"INSERT INTO {_TABLE} (dataset_id, row_number, data) VALUES (%s, %s, %s)"  # noqa: S608


# PostgreSQL binary COPY framing: signature, flags, header extension length;
# each tuple: field count, then (length, bytes) per field; trailer -1.
_PG_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_PG_COPY_TRAILER = struct.pack(">h", -1)
_PG_TUPLE_HEAD = struct.Struct(">hi16siqi")
# The constant start of every tuple of one dataset (field count, uuid length and
# value, int8 length), then the per-row part (row number, bytea length).
_PG_TUPLE_FIXED = struct.Struct(">hi16si")
_PG_TUPLE_ROW = struct.Struct(">qi")


def pg_binary_copy_payload(dataset_id: uuid.UUID, rows: Sequence[tuple[int, bytes]]) -> bytes:
    """One binary COPY stream for (dataset_id uuid, row_number int8, data bytea) tuples.

    Framing the tuples here costs about a third of psycopg's per-row
    ``write_row`` (which adapts each value through Python dumpers).
    """
    pack = _PG_TUPLE_HEAD.pack
    uid = dataset_id.bytes
    parts = [_PG_COPY_HEADER]
    append = parts.append
    for row_number, blob in rows:
        append(pack(3, 16, uid, 8, row_number, len(blob)))
        append(blob)
    append(_PG_COPY_TRAILER)
    return b"".join(parts)


def pg_tuple_prefix(dataset_id: uuid.UUID) -> bytes:
    """The constant start of every COPY tuple of one dataset: field count, the uuid
    field, the int8 length; the row number and the blob follow."""
    return _PG_TUPLE_FIXED.pack(3, 16, dataset_id.bytes, 8)


def pg_binary_copy_tuples(
    dataset_id: uuid.UUID,
    first_row_number: int,
    blob_prefix: bytes,
    ciphertexts: Sequence[bytes],
) -> bytes:
    """The binary COPY tuples (no stream header or trailer) of consecutive rows.

    Row ``first_row_number + i`` gets the blob ``blob_prefix + ciphertexts[i]``.
    Consecutive numbering lets ``struct`` and ``bytes.join``, driven by
    ``map``/``zip``, build the whole piece: no Python bytecode runs per row, and
    each blob is copied once, straight into the stream.
    """
    fixed = pg_tuple_prefix(dataset_id)
    head = struct.Struct(f">qi{len(blob_prefix)}s").pack
    numbers = range(first_row_number, first_row_number + len(ciphertexts))
    lengths = map(len(blob_prefix).__add__, map(len, ciphertexts))
    heads = map(head, numbers, lengths, repeat(blob_prefix))
    return b"".join(chain.from_iterable(zip(repeat(fixed), heads, ciphertexts)))


class RowBatch:
    """Encrypted rows of one dataset, numbered consecutively, being prepared for writing.

    :meth:`add` (CPU work, no database access) appends the next rows; on
    PostgreSQL it frames them at once into a piece of the binary COPY stream,
    elsewhere it keeps the blobs. :func:`rows_write_batch` then writes it all.
    """

    __slots__ = (
        "_blobs",
        "_native",
        "_pieces",
        "_tuple_prefix",
        "count",
        "dataset_id",
        "first_row_number",
        "nbytes",
    )

    def __init__(
        self, dataset_id: uuid.UUID, first_row_number: int, *, native: bool = True
    ) -> None:
        self.dataset_id = dataset_id
        self.first_row_number = first_row_number
        self.count = 0
        self.nbytes = 0  # held in memory: COPY stream or blobs
        # COPY stream pieces on PostgreSQL (header first), blobs elsewhere.
        self._pieces: list[bytes] | None = (
            [_PG_COPY_HEADER] if connection.vendor == "postgresql" else None
        )
        self._blobs: list[bytes] = []
        self._native = native and self._pieces is not None
        self._tuple_prefix = pg_tuple_prefix(dataset_id)

    def add_rows(self, cipher: RowCipher, rows: list[list[str]]) -> None:
        """Encrypt and append the next rows: in C on PostgreSQL when the accelerator is
        built (``RowCipher.copy_tuples``), else through :meth:`add`. Same bytes either way."""
        first = self.first_row_number + self.count
        if self._native and self._pieces is not None:
            piece = cipher.copy_tuples(first, rows, self._tuple_prefix)
            if piece is not None:
                self._pieces.append(piece)
                self.nbytes += len(piece)
                self.count += len(rows)
                return
        self.add(*cipher.encrypt_rows_split(first, rows))

    def add(self, blob_prefix: bytes, ciphertexts: Sequence[bytes]) -> None:
        """Append the next ``len(ciphertexts)`` rows; blob i is ``blob_prefix + ciphertexts[i]``."""
        first = self.first_row_number + self.count
        if self._pieces is not None:
            piece = pg_binary_copy_tuples(self.dataset_id, first, blob_prefix, ciphertexts)
            self._pieces.append(piece)
            self.nbytes += len(piece)
        else:
            blobs = list(map(blob_prefix.__add__, ciphertexts))
            self._blobs.extend(blobs)
            self.nbytes += sum(map(len, blobs))
        self.count += len(ciphertexts)


def rows_batch(*, dataset_id: uuid.UUID, first_row_number: int) -> RowBatch:
    """An empty batch whose first row will be ``first_row_number``.

    ``CSVAULT_NATIVE_ROWS`` (on by default) lets :meth:`RowBatch.add_rows` use the
    C accelerator when it is built.
    """
    return RowBatch(dataset_id, first_row_number, native=settings.CSVAULT_NATIVE_ROWS)


def rows_write_batch(batch: RowBatch) -> None:
    """Insert a prepared batch; must run inside a transaction."""
    if not batch.count:
        return
    with connection.cursor() as cursor:
        if batch._pieces is not None:
            with cursor.cursor.copy(_COPY_SQL) as copy:
                for piece in batch._pieces:
                    copy.write(piece)
                copy.write(_PG_COPY_TRAILER)
        else:
            db_id = Dataset._meta.pk.get_db_prep_value(batch.dataset_id, connection)
            numbers = range(batch.first_row_number, batch.first_row_number + batch.count)
            cursor.executemany(_INSERT_SQL, list(zip(repeat(db_id), numbers, batch._blobs)))


def rows_write(*, dataset_id: uuid.UUID, rows: Sequence[tuple[int, bytes]]) -> None:
    """Insert ``(row_number, ciphertext)`` pairs; must run inside a transaction."""
    if not rows:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(_COPY_SQL) as copy:
                copy.write(pg_binary_copy_payload(dataset_id, rows))
        else:
            db_id = Dataset._meta.pk.get_db_prep_value(dataset_id, connection)
            cursor.executemany(
                _INSERT_SQL, [(db_id, row_number, blob) for row_number, blob in rows]
            )


def rows_delete(*, dataset_id: uuid.UUID) -> int:
    """Delete every row of a dataset in one statement; returns how many."""
    return ProcessedData.objects.filter(dataset_id=dataset_id)._raw_delete(ProcessedData.objects.db)


# While a writer runs, the GIL changes hands after CSVAULT_GIL_SWITCH_INTERVAL
# seconds (1 ms by default) instead of Python's default 5 ms. The writer thread
# needs the GIL back after every wait on the socket (a batch's COPY stream fills
# the socket buffer dozens of times); with the default interval each of those
# waits cost up to 5 ms of a busy parser, which made the writer, not PostgreSQL,
# the bottleneck.


class BackgroundWriter:
    """Runs database jobs in order on one thread that borrows the caller's connection.

    The ingest parses and encrypts batch N+1 (CPU, holding the GIL) while this
    thread writes batch N: psycopg releases the GIL while it waits for
    PostgreSQL, which does its share of the work on another core. At most
    ``depth`` jobs wait in the queue, so memory stays bounded whatever the
    file size.

    The thread uses the caller's own ``DatabaseWrapper`` (as Django's live
    server thread does), so a job sees exactly what the caller would: the same
    transaction state, and in tests the same test transaction. The caller must
    therefore not touch the database between ``__enter__`` and ``__exit__``;
    it only submits jobs. Jobs run one at a time, in submission order.

    The first job that raises stops the writer: later jobs are skipped, and the
    exception is raised in the caller by the next :meth:`submit` or by
    ``__exit__``. When the caller's block raises, jobs still queued are dropped,
    the running one is waited for, and the caller's exception propagates
    (unless a job failed first: that earlier failure is raised instead).
    """

    def __init__(self, *, depth: int = 1, using: str = DEFAULT_DB_ALIAS) -> None:
        if depth < 1:
            raise ValueError("depth must be positive")
        self._using = using
        self._connection = connections[using]
        self._jobs: queue.Queue[Callable[[], object] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread: threading.Thread | None = None
        self._switch_interval = sys.getswitchinterval()

    def __enter__(self) -> BackgroundWriter:
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(settings.CSVAULT_GIL_SWITCH_INTERVAL)
        self._connection.inc_thread_sharing()
        self._thread = threading.Thread(target=self._run, name="csvault-writer", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        connections[self._using] = self._connection
        try:
            while (job := self._jobs.get()) is not None:
                if self._error is None and not self._cancelled:
                    try:
                        job()
                    except BaseException as exc:
                        self._error = exc
                del job  # don't hold a written batch while waiting for the next
        finally:
            del connections[self._using]

    def submit(self, job: Callable[[], object]) -> None:
        """Queue ``job`` (blocks while the queue is full); raise a failed job's error."""
        if self._error is not None:
            raise self._error
        self._jobs.put(job)

    def _stop(self) -> None:
        if self._thread is None:
            return
        self._jobs.put(None)
        self._thread.join()
        self._thread = None
        self._connection.dec_thread_sharing()
        sys.setswitchinterval(self._switch_interval)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._cancelled = True
            while True:  # drop what is queued, so that the stop marker fits
                try:
                    self._jobs.get_nowait()
                except queue.Empty:
                    break
        self._stop()
        if self._error is not None and self._error is not exc:
            raise self._error
