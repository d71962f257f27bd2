"""What a delete leaves to the background: a crypto-shredded dataset's rows, file and record."""

from __future__ import annotations

import logging
import uuid

from csvault.core.storage import dataset_storage
from csvault.datasets.models import Dataset
from csvault.pipeline.rowstore import rows_delete

logger = logging.getLogger(__name__)


def dataset_purge(*, dataset_id: uuid.UUID) -> bool:
    """Remove a deleted dataset's rows, file and record; False if there is nothing to purge."""
    dataset = Dataset.objects.filter(id=dataset_id, deleted_at__isnull=False).first()
    if dataset is None:
        return False
    rows_delete(dataset_id=dataset_id)
    if dataset.storage_key:
        dataset_storage().delete(dataset.storage_key)  # and any unfinished upload of it
    Dataset.objects.filter(id=dataset_id, deleted_at__isnull=False).delete()
    logger.info("dataset %s purged", dataset_id)
    return True
