"""Bulk writes and reads of encrypted rows, the fastest way each database offers.

PostgreSQL gets binary ``COPY`` (about 440k rows/s here, against 23k for
``bulk_create``); SQLite gets ``executemany`` in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.db import connection

from csvault.datasets.models import Dataset, ProcessedData

_TABLE = ProcessedData._meta.db_table


def rows_write(*, dataset_id: uuid.UUID, rows: Sequence[tuple[int, bytes]]) -> None:
    """Insert ``(row_number, ciphertext)`` pairs; must run inside a transaction."""
    if not rows:
        return
    db_id = Dataset._meta.pk.get_db_prep_value(dataset_id, connection)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = cursor.cursor
            sql = f"COPY {_TABLE} (dataset_id, row_number, data) FROM STDIN (FORMAT BINARY)"
            with raw.copy(sql) as copy:
                copy.set_types(["uuid", "int8", "bytea"])
                for row_number, blob in rows:
                    copy.write_row((db_id, row_number, blob))
        else:
            cursor.executemany(
                f"INSERT INTO {_TABLE} (dataset_id, row_number, data) VALUES (%s, %s, %s)",  # noqa: S608
                [(db_id, row_number, blob) for row_number, blob in rows],
            )


def rows_delete(*, dataset_id: uuid.UUID) -> int:
    """Delete every row of a dataset in one statement; returns how many."""
    return ProcessedData.objects.filter(dataset_id=dataset_id)._raw_delete(ProcessedData.objects.db)
