"""Bulk writes and reads of encrypted rows, the fastest way each database offers.

Rows are stored in blocks (``RowCipher.seal_blocks``): one ``ProcessedData`` tuple per
block of consecutive rows, keyed by the dataset and the block's first row number. On
PostgreSQL a tuple costs about 2 µs of primary-key and tuple overhead whatever its size,
more than a raw COPY spends on a whole row; blocks of up to 64 rows divide that by
30-64 (docs/performance.md).

PostgreSQL gets binary ``COPY``; SQLite gets ``executemany`` in the caller's
transaction. The ingest prepares a batch with :func:`rows_batch` and
``RowBatch.add_rows`` (CPU work: encryption, and the COPY stream framed by C-level
``map``/``join``, no Python code per row) outside the transaction, then writes it with
:func:`rows_write_batch` inside the transaction, where the time goes to the database.
Readers get rows by number with :func:`rows_read`; the ingest's writer thread
(writer.py) runs the writes while the next batch is prepared.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Sequence
from itertools import chain, repeat
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from csvault.crypto.rows import RowCipher, RowDecryptError
from csvault.csvio.blocks import BLOCK_MAX_ROWS
from csvault.datasets.models import Dataset, ProcessedData

_TABLE = ProcessedData._meta.db_table
_COPY_SQL = f"COPY {_TABLE} (dataset_id, row_number, data) FROM STDIN (FORMAT BINARY)"
_INSERT_SQL = f"INSERT INTO {_TABLE} (dataset_id, row_number, data) VALUES (%s, %s, %s)"  # noqa: S608
# The largest row number a query may name (the column is int8).
MAX_ROW_NUMBER = 2**63 - 1


# PostgreSQL binary COPY framing: signature, flags, header extension length;
# each tuple: field count, then (length, bytes) per field; trailer -1.
_PG_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_PG_COPY_TRAILER = struct.pack(">h", -1)
# The constant start of every tuple of one dataset (field count, uuid length and
# value, int8 length), then the per-tuple part (row number, bytea length).
_PG_TUPLE_FIXED = struct.Struct(">hi16si")


def pg_binary_copy_tuples(
    dataset_id: uuid.UUID,
    row_numbers: Iterable[int],
    blob_prefix: bytes,
    ciphertexts: Sequence[bytes],
) -> bytes:
    """The binary COPY tuples (no stream header or trailer) of blobs of one dataset.

    Tuple ``i`` gets the row number ``row_numbers[i]`` and the blob
    ``blob_prefix + ciphertexts[i]``. ``struct`` and ``bytes.join``, driven by
    ``map``/``zip``, build the whole piece: no Python bytecode runs per tuple, and
    each blob is copied once, straight into the stream.
    """
    fixed = _PG_TUPLE_FIXED.pack(3, 16, dataset_id.bytes, 8)
    head = struct.Struct(f">qi{len(blob_prefix)}s").pack
    lengths = map(len(blob_prefix).__add__, map(len, ciphertexts))
    heads = map(head, row_numbers, lengths, repeat(blob_prefix))
    return b"".join(chain.from_iterable(zip(repeat(fixed), heads, ciphertexts)))


class RowBatch:
    """Encrypted rows of one dataset, numbered consecutively, being prepared for writing.

    :meth:`add_rows` (CPU work, no database access) seals the next rows into blocks;
    on PostgreSQL it frames them at once into a piece of the binary COPY stream,
    elsewhere it keeps the blobs. :func:`rows_write_batch` then writes it all.
    """

    __slots__ = ("_blobs", "_pieces", "count", "dataset_id", "first_row_number", "nbytes")

    def __init__(self, dataset_id: uuid.UUID, first_row_number: int) -> None:
        self.dataset_id = dataset_id
        self.first_row_number = first_row_number
        self.count = 0  # rows
        self.nbytes = 0  # held in memory: COPY stream or blobs
        # COPY stream pieces on PostgreSQL (header first), (row number, blob) elsewhere.
        self._pieces: list[bytes] | None = (
            [_PG_COPY_HEADER] if connection.vendor == "postgresql" else None
        )
        self._blobs: list[tuple[int, bytes]] = []

    def add_rows(self, cipher: RowCipher, rows: Sequence[Sequence[str]]) -> None:
        """Seal the next rows (blocks never span two calls) and append them."""
        first = self.first_row_number + self.count
        prefix, starts, ciphertexts = cipher.seal_blocks(first, rows)
        self._append(starts, prefix, ciphertexts)
        self.count += len(rows)

    def add_blocks(self, cipher: RowCipher, plaintexts: list[bytes], counts: list[int]) -> None:
        """Seal and append the next rows, given as block plaintexts (the C CSV parser's)."""
        prefix, starts, ciphertexts = cipher.seal_grid_blocks(
            self.first_row_number + self.count, plaintexts, counts
        )
        self._append(starts, prefix, ciphertexts)
        self.count += sum(counts)

    def _append(self, starts: Iterable[int], prefix: bytes, ciphertexts: list[bytes]) -> None:
        if self._pieces is not None:
            piece = pg_binary_copy_tuples(self.dataset_id, starts, prefix, ciphertexts)
            self._pieces.append(piece)
            self.nbytes += len(piece)
        else:
            blobs = list(zip(starts, map(prefix.__add__, ciphertexts), strict=True))
            self._blobs.extend(blobs)
            self.nbytes += sum(len(blob) for _, blob in blobs)


def rows_batch(*, dataset_id: uuid.UUID, first_row_number: int) -> RowBatch:
    """An empty batch whose first row will be ``first_row_number``."""
    return RowBatch(dataset_id, first_row_number)


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
            cursor.executemany(
                _INSERT_SQL, [(db_id, number, blob) for number, blob in batch._blobs]
            )


def rows_read(
    blocks: QuerySet[Any], cipher: RowCipher, *, after: int, count: int
) -> list[tuple[int, list[str]]]:
    """Rows ``after + 1`` to ``after + count`` (those that exist), decrypted, in order.

    ``blocks`` is the ``ProcessedData`` queryset of one dataset (the caller adds any
    access conditions). One query reads the blocks that can hold those rows: a block
    holds at most ``BLOCK_MAX_ROWS`` rows, so it starts no further back than that. The
    blocks must follow each other without gap or overlap (they do as written); anything
    else raises :class:`RowDecryptError` rather than return a wrong row.
    """

    def fetch(low: int, last: int) -> Iterable[tuple[int, Any]]:
        return (
            blocks.filter(row_number__gt=low, row_number__lte=last)
            .order_by("row_number")
            .values_list("row_number", "data")
        )

    return _rows_from_blocks(
        fetch, lambda end: blocks.filter(row_number__gt=end).exists(), cipher, after, count
    )


_DATASETS = Dataset._meta.db_table
_OWNED = (
    f"FROM {_TABLE} p JOIN {_DATASETS} d ON d.id = p.dataset_id "
    "WHERE p.dataset_id = %s AND d.owner_id = %s AND d.deleted_at IS NULL AND p.row_number > %s"
)
_OWNED_BLOCKS_SQL = (
    f"SELECT p.row_number, p.data {_OWNED} AND p.row_number <= %s ORDER BY p.row_number"
)
_OWNED_EXISTS_SQL = f"SELECT 1 {_OWNED} LIMIT 1"


def rows_read_owned(
    *, dataset_id: uuid.UUID | str, owner_id: int, cipher: RowCipher, after: int, count: int
) -> list[tuple[int, list[str]]]:
    """:func:`rows_read` of one owner's dataset that is not deleted, in plain SQL (the
    API's row pages: the ORM would spend more building the query than running it)."""
    db_id = Dataset._meta.pk.get_db_prep_value(uuid.UUID(str(dataset_id)), connection)

    def fetch(low: int, last: int) -> Iterable[tuple[int, Any]]:
        with connection.cursor() as cursor:
            cursor.execute(_OWNED_BLOCKS_SQL, [db_id, owner_id, low, last])
            return cursor.fetchall()

    def exists_after(end: int) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(_OWNED_EXISTS_SQL, [db_id, owner_id, end])
            return cursor.fetchone() is not None

    return _rows_from_blocks(fetch, exists_after, cipher, after, count)


def _rows_from_blocks(
    fetch: Any, exists_after: Any, cipher: RowCipher, after: int, count: int
) -> list[tuple[int, list[str]]]:
    if count < 1 or after >= MAX_ROW_NUMBER:
        return []
    last = min(after + count, MAX_ROW_NUMBER)
    rows: list[tuple[int, list[str]]] = []
    expected: int | None = None
    for start, blob in fetch(max(after - BLOCK_MAX_ROWS + 1, -1), last):
        if expected is not None and start != expected:
            raise RowDecryptError(
                f"block at row {start}: expected the next block at row {expected}; "
                "stored rows are missing or duplicated"
            )
        values = cipher.decrypt_block(start, blob)
        expected = start + len(values)
        if expected <= after + 1:
            continue  # ends before the rows asked for
        skip = max(0, after + 1 - start)
        rows.extend(zip(range(start + skip, expected), values[skip:], strict=True))
    rows = [row for row in rows if row[0] <= last]
    # Rows are numbered 1..N without gaps: if a later row exists, every one before it
    # must. A short answer is checked to be the true end (one indexed look past it).
    if rows and rows[0][0] != after + 1:
        raise RowDecryptError(f"row {after + 1} is missing from the stored rows")
    end = rows[-1][0] if rows else after
    if end < last and exists_after(end):
        raise RowDecryptError(f"row {end + 1} is missing from the stored rows")
    return rows


def rows_delete(*, dataset_id: uuid.UUID) -> int:
    """Delete every stored block of a dataset in one statement; returns how many."""
    return ProcessedData.objects.filter(dataset_id=dataset_id)._raw_delete(ProcessedData.objects.db)
