"""Tampered ciphertext in the database is an error, never data.

Rows are stored in blocks (one tuple per block of consecutive rows); each test
tampers with the block that holds the row it names.
"""

from __future__ import annotations

import pytest

from csvault.datasets.models import ProcessedData
from csvault.datasets.selectors import dataset_row_page
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import block_start, ingest, upload

pytestmark = pytest.mark.django_db


def flip_a_bit(dataset_id: str, row_number: int) -> int:
    """Flip a bit of the block holding ``row_number``; returns the block's first row."""
    start = block_start(dataset_id, row_number)
    block = ProcessedData.objects.get(dataset_id=dataset_id, row_number=start)
    data = bytearray(block.data)
    data[len(data) // 2] ^= 0x01
    ProcessedData.objects.filter(dataset_id=dataset_id, row_number=start).update(data=bytes(data))
    return start


def test_a_flipped_bit_in_a_row_is_an_integrity_error_not_data(api):
    rows = tricky_rows(300)
    dataset_id = ingest(upload(api, to_csv(rows)))
    start = flip_a_bit(dataset_id, 250)
    assert start > 100  # blocks hold at most 64 rows

    response = api.get(f"/api/datasets/{dataset_id}/rows/?limit=5")
    assert response.status_code == 200  # rows 1-5 are intact
    response = api.get(f"/api/datasets/{dataset_id}/rows/?after=245&limit=10")
    assert response.status_code == 500
    body = response.json()
    assert body == {"error": {"code": "integrity_error", "message": body["error"]["message"]}}
    assert "integrity check" in body["error"]["message"]


def test_blocks_swapped_in_the_database_do_not_decrypt(api):
    dataset_id = ingest(upload(api, to_csv(tricky_rows(300))))  # several blocks
    blocks = ProcessedData.objects.filter(dataset_id=dataset_id).order_by("row_number")
    (first, one), (second, two) = blocks.values_list("row_number", "data")[:2]
    ProcessedData.objects.filter(dataset_id=dataset_id, row_number=first).update(data=two)
    ProcessedData.objects.filter(dataset_id=dataset_id, row_number=second).update(data=one)
    response = api.get(f"/api/datasets/{dataset_id}/rows/")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "integrity_error"


@pytest.mark.parametrize("export_format", ["csv", "jsonl"])
def test_an_export_stops_at_a_tampered_row_instead_of_returning_it(api, export_format):
    rows = tricky_rows(40)
    dataset_id = ingest(upload(api, to_csv(rows)))
    start = flip_a_bit(dataset_id, 40)
    response = api.get(f"/api/datasets/{dataset_id}/export/?format={export_format}")
    assert response.status_code == 200  # the headers left before row 40 was read
    with pytest.raises(Exception, match=f"block at row {start}: authentication failed"):
        b"".join(response.streaming_content)


def test_the_selector_never_returns_a_tampered_row(api):
    from csvault.crypto.rows import RowDecryptError
    from csvault.datasets.models import Dataset

    dataset_id = ingest(upload(api, to_csv(tricky_rows(3))))
    flip_a_bit(dataset_id, 1)
    dataset = Dataset.objects.get(id=dataset_id)
    with pytest.raises(RowDecryptError):
        dataset_row_page(owner=dataset.owner, dataset_id=dataset.id, after=0, limit=10)
