"""Re-wrapping every dataset's data key under the active master key (key rotation).

Only the wrapped data key changes: rows and files stay encrypted under the same data
key, so a rotation is quick (one unwrap, one wrap and one UPDATE per dataset) however
large the datasets are.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count, Q, QuerySet

from csvault.crypto.keyring import Keyring, KeyringError
from csvault.datasets.models import Dataset
from csvault.datasets.update import dataset_update

#: ``(dataset id, key id, wrapped key)`` as read from the database.
WrappedKeyRow = tuple[uuid.UUID, str, bytes]


@dataclass
class RotationReport:
    rewrapped: int = 0
    current: int = 0
    #: Changed (deleted, shredded or re-wrapped) by someone else between read and write.
    skipped: int = 0
    #: Key id -> number of datasets whose data key could not be unwrapped.
    failed: Counter[str] = field(default_factory=Counter)
    #: The first problem seen per failing key id (never contains key material).
    problems: dict[str, str] = field(default_factory=dict)


def _live() -> QuerySet[Dataset]:
    # A deleted dataset's key is already destroyed (crypto-shredded); its record only
    # waits for the background purge and needs no master key any more.
    return Dataset.objects.filter(deleted_at__isnull=True)


def dataset_keys_stale(*, keyring: Keyring, batch_size: int) -> Iterator[list[WrappedKeyRow]]:
    """Batches of the datasets whose data key is not wrapped under the active master key.

    Keyset-paginated on the id, so each batch is one short query and a dataset that is
    re-wrapped (or fails) is not read again.
    """
    after: uuid.UUID | None = None
    stale = _live().exclude(key_id=keyring.active_id).order_by("id")
    while True:
        page = stale.filter(id__gt=after) if after is not None else stale
        batch = [
            (dataset_id, key_id, bytes(wrapped))
            for dataset_id, key_id, wrapped in page.values_list("id", "key_id", "wrapped_key")[
                :batch_size
            ]
        ]
        if not batch:
            return
        yield batch
        after = batch[-1][0]


def dataset_keys_rewrap(
    *, keyring: Keyring, rows: list[WrappedKeyRow], report: RotationReport, dry_run: bool = False
) -> None:
    """Re-wrap one batch under the active master key, adding the outcome to ``report``.

    Each write is a conditional UPDATE on ``(id, key_id, wrapped_key)`` as read: a dataset
    deleted (its key shredded) or re-wrapped by a concurrent run in the meantime is left
    as it is and counted as skipped. With ``dry_run`` every key is unwrapped (so failures
    show) but nothing is written.
    """
    updates: list[tuple[WrappedKeyRow, str, bytes]] = []
    for row in rows:
        _, key_id, wrapped = row
        if not wrapped:  # shredded by a delete since the read
            report.skipped += 1
            continue
        try:
            new_id, new_wrapped = keyring.rewrap(key_id, wrapped)
        except KeyringError as exc:
            report.failed[key_id] += 1
            report.problems.setdefault(key_id, str(exc))
            continue
        updates.append((row, new_id, new_wrapped))
    if dry_run:
        report.rewrapped += len(updates)
        return
    with transaction.atomic():
        for (dataset_id, key_id, wrapped), new_id, new_wrapped in updates:
            # dataset_update also clears the dataset's cached reads (which carry
            # the sealed header under the old wrapped key).
            changed = dataset_update(
                dataset_id=dataset_id,
                where=Q(key_id=key_id, wrapped_key=wrapped),
                key_id=new_id,
                wrapped_key=new_wrapped,
            )
            if changed:
                report.rewrapped += 1
            else:
                report.skipped += 1


def dataset_keys_rotate(
    *, keyring: Keyring, batch_size: int = 500, dry_run: bool = False
) -> RotationReport:
    """Re-wrap every data key that is not under the active master key; see the report."""
    report = RotationReport()
    report.current = _live().filter(key_id=keyring.active_id).count()
    for batch in dataset_keys_stale(keyring=keyring, batch_size=batch_size):
        dataset_keys_rewrap(keyring=keyring, rows=batch, report=report, dry_run=dry_run)
    return report


def dataset_key_ids_in_use() -> dict[str, int]:
    """Master key id -> number of datasets whose data key is wrapped under it."""
    counts = _live().values("key_id").annotate(n=Count("id")).order_by("key_id")
    return {row["key_id"]: row["n"] for row in counts}
