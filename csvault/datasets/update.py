"""``dataset_update``: the one way a dataset changes after it is created.

Every status change, checkpoint, heartbeat and key destruction is an UPDATE of
one dataset row, conditional where the writer expects a state (``where``: a
cancelled or taken-over dataset is never written by a stale worker), and every
such write must also clear that dataset's cached reads. Both happen here, in
one function that callers name.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.db.models import Q

from csvault.datasets.cache import dataset_changed
from csvault.datasets.models import Dataset


def dataset_update(*, dataset_id: uuid.UUID | str, where: Q | None = None, **fields: Any) -> bool:
    """Set ``fields`` on the dataset if it matches ``where``; True if it did.

    Clears the dataset's cached reads (and its owner's list) at once and again
    after commit (at once outside a transaction), so that no reader re-caches
    the old state in between (see csvault/datasets/cache.py).
    """
    rows = Dataset.objects.filter(id=dataset_id)
    if where is not None:
        rows = rows.filter(where)
    if not rows.update(**fields):
        return False
    dataset_changed(dataset_id)
    transaction.on_commit(lambda: dataset_changed(dataset_id), using=rows.db)
    return True
