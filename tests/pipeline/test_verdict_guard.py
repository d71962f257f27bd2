"""No ingest completes a file without a clean scan verdict: a plain ingest does not claim
a dataset whose verdict is still to come, and the database refuses ``completed`` without
a scanner (csvault/pipeline/scan.py runs the ingest before the verdict)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from csvault.datasets.models import Dataset
from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.scan import dataset_scan
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import upload

pytestmark = pytest.mark.django_db


def test_a_plain_ingest_leaves_a_dataset_without_a_verdict_alone(api) -> None:
    dataset_id = upload(api, to_csv(tricky_rows(50))).json()["id"]
    Dataset.objects.filter(id=dataset_id).update(status="queued")  # scanner still ""
    assert dataset_ingest(dataset_id=dataset_id).status == "skipped"
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.status, dataset.attempts, dataset.rows_processed) == ("queued", 0, 0)


def test_a_plain_ingest_takes_it_once_the_verdict_is_recorded(api) -> None:
    rows = tricky_rows(50)
    dataset_id = upload(api, to_csv(rows)).json()["id"]
    assert dataset_scan(dataset_id=dataset_id, on_clean=None).status == "queued"
    assert Dataset.objects.get(id=dataset_id).scanner != ""
    assert dataset_ingest(dataset_id=dataset_id).status == "completed"


def test_the_database_refuses_completed_without_a_scanner(api) -> None:
    dataset_id = upload(api, to_csv(tricky_rows(5))).json()["id"]
    with pytest.raises(IntegrityError), transaction.atomic():
        Dataset.objects.filter(id=dataset_id).update(status="completed")
    Dataset.objects.filter(id=dataset_id).update(status="completed", scanner="clamd")
