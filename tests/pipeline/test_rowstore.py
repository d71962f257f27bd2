"""Rows stored in blocks: rows_read gives exactly the rows asked for, or an error."""

from __future__ import annotations

import pytest

from csvault.crypto.keyring import new_data_key
from csvault.crypto.rows import RowCipher, RowDecryptError
from csvault.csvio.blocks import BLOCK_MAX_ROWS
from csvault.datasets.models import Dataset, ProcessedData
from csvault.pipeline.rowstore import rows_batch, rows_read, rows_write_batch

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(user) -> Dataset:
    return Dataset.objects.create(owner=user, name="d.csv", size=1)


def _store(dataset: Dataset, cipher: RowCipher, rows: list[list[str]], steps: list[int]) -> None:
    """Store rows as the ingest does: add_rows per step, one batch."""
    batch = rows_batch(dataset_id=dataset.id, first_row_number=1)
    done = 0
    for step in steps:
        batch.add_rows(cipher, rows[done : done + step])
        done += step
    assert done == len(rows)
    rows_write_batch(batch)


ROWS = [[str(i), f"name {i}", "x" * (i % 50)] for i in range(1, 501)]


@pytest.mark.parametrize("steps", [[500], [1, 2, 3, 494], [7] * 71 + [3]])
def test_any_range_reads_exactly_its_rows(dataset, steps) -> None:
    cipher = RowCipher(new_data_key(), dataset.id, attempt=1)
    _store(dataset, cipher, ROWS, steps)
    blocks = ProcessedData.objects.filter(dataset_id=dataset.id)
    assert blocks.count() < 500  # blocks, not rows
    numbered = list(enumerate(ROWS, start=1))
    for after, count in [(0, 1), (0, 500), (0, 1000), (1, 10), (63, 64), (250, 100), (499, 5)]:
        assert (
            rows_read(blocks, cipher, after=after, count=count) == numbered[after : after + count]
        )
    assert rows_read(blocks, cipher, after=500, count=10) == []
    assert rows_read(blocks, cipher, after=2**63 - 1, count=10) == []
    assert rows_read(blocks, cipher, after=10, count=0) == []


def test_one_row_blobs_of_the_format_before_blocks_still_read(dataset) -> None:
    cipher = RowCipher(new_data_key(), dataset.id, attempt=1)
    ProcessedData.objects.bulk_create(
        ProcessedData(dataset=dataset, row_number=n, data=cipher.encrypt(n, values))
        for n, values in enumerate(ROWS[:20], start=1)
    )
    blocks = ProcessedData.objects.filter(dataset_id=dataset.id)
    assert rows_read(blocks, cipher, after=5, count=3) == list(enumerate(ROWS[5:8], start=6))


def test_a_missing_or_overlapping_block_is_an_error_not_fewer_rows(dataset) -> None:
    cipher = RowCipher(new_data_key(), dataset.id, attempt=1)
    _store(dataset, cipher, ROWS, [10] * 50)  # 50 blocks of 10 rows
    blocks = ProcessedData.objects.filter(dataset_id=dataset.id)
    ProcessedData.objects.filter(dataset_id=dataset.id, row_number=101).delete()
    with pytest.raises(RowDecryptError, match="expected the next block at row 101"):
        rows_read(blocks, cipher, after=95, count=20)
    for after, count in ((95, 10), (100, 5), (102, 5)):  # short of the block after the gap
        with pytest.raises(RowDecryptError, match=r"row 10[13] is missing"):
            rows_read(blocks, cipher, after=after, count=count)
    assert rows_read(blocks, cipher, after=90, count=10) == list(enumerate(ROWS[90:100], 91))
    # A block that claims rows another block holds.
    prefix, _, ciphertexts = cipher.seal_blocks(205, ROWS[204:210])
    ProcessedData.objects.create(dataset=dataset, row_number=205, data=prefix + ciphertexts[0])
    with pytest.raises(RowDecryptError, match="missing or duplicated"):
        rows_read(blocks, cipher, after=200, count=10)


def test_a_read_finds_a_row_at_the_end_of_a_full_block(dataset) -> None:
    cipher = RowCipher(new_data_key(), dataset.id, attempt=1)
    rows = [["a"]] * (3 * BLOCK_MAX_ROWS)  # tiny rows: full blocks of BLOCK_MAX_ROWS
    _store(dataset, cipher, rows, [len(rows)])
    blocks = ProcessedData.objects.filter(dataset_id=dataset.id)
    assert blocks.count() == 3
    assert rows_read(blocks, cipher, after=BLOCK_MAX_ROWS - 1, count=1) == [(BLOCK_MAX_ROWS, ["a"])]
    assert rows_read(blocks, cipher, after=BLOCK_MAX_ROWS, count=1) == [(BLOCK_MAX_ROWS + 1, ["a"])]


def test_another_datasets_blocks_are_not_read(dataset, user) -> None:
    other = Dataset.objects.create(owner=user, name="o.csv", size=1)
    key = new_data_key()
    cipher = RowCipher(key, dataset.id, attempt=1)
    _store(dataset, cipher, ROWS[:5], [5])
    empty = ProcessedData.objects.filter(dataset_id=other.id)
    assert rows_read(empty, cipher, after=0, count=5) == []
    # Blocks are bound to their dataset: another dataset's blocks under the same key
    # and row numbers are refused, not returned.
    other_cipher = RowCipher(key, other.id, attempt=1)
    _store(other, other_cipher, ROWS[5:10], [5])
    with pytest.raises(RowDecryptError):
        rows_read(ProcessedData.objects.filter(dataset_id=other.id), cipher, after=0, count=5)
    mine = ProcessedData.objects.filter(dataset_id=dataset.id)
    assert rows_read(mine, cipher, after=0, count=10) == list(enumerate(ROWS[:5], start=1))
