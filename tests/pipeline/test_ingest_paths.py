"""The ingest's two readers: the C fast path and the reference reader store the same rows,
and a file the fast path hands over mid-way ends exactly as the reference reader says."""

from __future__ import annotations

import pytest
from django.db.models import Sum
from django.db.models.functions import Length

from csvault.csvio.fastcsv import FAST_AVAILABLE
from csvault.datasets.models import Dataset, ProcessedData
from csvault.pipeline.ingest import dataset_ingest
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import ingest, stored_rows, upload

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not FAST_AVAILABLE, reason="C fast path not built (CI fails on this)"),
]

ROWS = tricky_rows(5000)


def stored_bytes(dataset_id) -> int:
    blocks = ProcessedData.objects.filter(dataset_id=dataset_id)
    return blocks.aggregate(total=Sum(Length("data")))["total"]


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("fast", [True, False])
def test_both_readers_store_the_same_rows(api, settings, fast, compress) -> None:
    settings.CSVAULT_FAST_CSV = fast
    settings.CSVAULT_COMPRESS_ROWS = compress
    settings.CSVAULT_INGEST_BATCH_ROWS = 1000
    data = to_csv(ROWS)
    dataset_id = ingest(upload(api, data))
    assert Dataset.objects.get(id=dataset_id).status == "completed"
    assert stored_rows(dataset_id) == list(enumerate(ROWS, start=1))
    # These rows compress about 2x (LZ4); uncompressed, the blocks hold about the file's
    # text plus 33 bytes each.
    if compress:
        assert stored_bytes(dataset_id) < len(data) * 0.6
    else:
        assert stored_bytes(dataset_id) > len(data) * 0.9


def test_a_resumed_ingest_with_the_other_setting_stores_both_kinds_of_block(api, settings) -> None:
    settings.CSVAULT_INGEST_BATCH_ROWS = 1000
    response = upload(api, to_csv(ROWS))
    dataset_id = response.json()["id"]
    ingest(response)  # compressed, as by default
    ProcessedData.objects.filter(dataset_id=dataset_id, row_number__gt=2000).delete()
    Dataset.objects.filter(id=dataset_id).update(status="queued", rows_processed=2000)
    settings.CSVAULT_COMPRESS_ROWS = False
    assert dataset_ingest(dataset_id=dataset_id).status == "completed"
    assert stored_rows(dataset_id) == list(enumerate(ROWS, start=1))
    blocks = ProcessedData.objects.filter(dataset_id=dataset_id).annotate(size=Length("data"))
    sizes = dict(blocks.values_list("row_number", "size"))
    # Blocks of 62-64 of these ~60-byte rows either way: 2,000 rows compressed (about
    # 2x), 3,000 not.
    before = [size for start, size in sizes.items() if start <= 2000]
    after = [size for start, size in sizes.items() if start > 2000]
    assert sum(after) / len(after) > 1.5 * sum(before) / len(before)


def test_a_row_the_fast_path_declines_is_read_by_the_reference_reader(api, settings) -> None:
    # 'x",' ends an unquoted value with a quote: valid, kept literally by the reference
    # reader, declined by the fast path, which has read the 3,000 rows before it.
    settings.CSVAULT_INGEST_BATCH_ROWS = 1000
    data = to_csv(ROWS[:3000]) + b'3001,x",a,b,c,d,e,f\r\n' + to_csv(ROWS[3001:], header=None)
    dataset_id = ingest(upload(api, data))
    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.status == "completed", dataset.error
    expected = [*ROWS[:3000], ["3001", 'x"', "a", "b", "c", "d", "e", "f"], *ROWS[3001:]]
    assert stored_rows(dataset_id) == list(enumerate(expected, start=1))


def test_an_error_after_the_fast_path_declines_is_reported_where_it_is(api) -> None:
    data = to_csv(ROWS[:4000]) + b'4001,a"b,c,d,e,f,g,h\r\n' + to_csv(ROWS[4001:], header=None)
    dataset_id = ingest(upload(api, data))
    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.status == "failed"
    error = dataset.error or {}
    assert error["code"] == "stray_quote"
    assert error["row"] == 4001
    assert error["line"] == 4002 + sum(
        v.count("\n") + v.count("\r") - v.count("\r\n") for row in ROWS[:4000] for v in row
    )
    assert not stored_rows(dataset_id)  # a failed dataset keeps no rows


@pytest.mark.parametrize("fast", [True, False])
def test_a_resumed_ingest_skips_exactly_the_committed_rows(api, settings, fast) -> None:
    settings.CSVAULT_FAST_CSV = fast
    settings.CSVAULT_INGEST_BATCH_ROWS = 700
    response = upload(api, to_csv(ROWS))
    dataset_id = response.json()["id"]
    ingest(response)
    # As a run that died after committing 2,100 rows would leave it.
    dataset = Dataset.objects.get(id=dataset_id)
    ProcessedData.objects.filter(dataset_id=dataset_id, row_number__gt=2100).delete()
    Dataset.objects.filter(id=dataset_id).update(status="queued", rows_processed=2100)
    assert dataset_ingest(dataset_id=dataset.id).status == "completed"
    assert stored_rows(dataset_id) == list(enumerate(ROWS, start=1))
