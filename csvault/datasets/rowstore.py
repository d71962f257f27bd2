"""Bulk writes and reads of encrypted rows, the fastest way each database offers.

PostgreSQL gets binary ``COPY`` (about 440k rows/s here, against 23k for
``bulk_create``); SQLite gets ``executemany`` in the caller's transaction.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence

from django.db import connection

from csvault.datasets.models import Dataset, ProcessedData

_TABLE = ProcessedData._meta.db_table


# PostgreSQL binary COPY framing: signature, flags, header extension length;
# each tuple: field count, then (length, bytes) per field; trailer -1.
_PG_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_PG_COPY_TRAILER = struct.pack(">h", -1)
_PG_TUPLE_HEAD = struct.Struct(">hi16siqi")


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


def rows_write(*, dataset_id: uuid.UUID, rows: Sequence[tuple[int, bytes]]) -> None:
    """Insert ``(row_number, ciphertext)`` pairs; must run inside a transaction."""
    if not rows:
        return
    db_id = Dataset._meta.pk.get_db_prep_value(dataset_id, connection)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            sql = f"COPY {_TABLE} (dataset_id, row_number, data) FROM STDIN (FORMAT BINARY)"
            with cursor.cursor.copy(sql) as copy:
                copy.write(pg_binary_copy_payload(dataset_id, rows))
        else:
            cursor.executemany(
                f"INSERT INTO {_TABLE} (dataset_id, row_number, data) VALUES (%s, %s, %s)",  # noqa: S608
                [(db_id, row_number, blob) for row_number, blob in rows],
            )


def rows_delete(*, dataset_id: uuid.UUID) -> int:
    """Delete every row of a dataset in one statement; returns how many."""
    return ProcessedData.objects.filter(dataset_id=dataset_id)._raw_delete(ProcessedData.objects.db)
