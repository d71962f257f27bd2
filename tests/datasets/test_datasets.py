"""Upload, detail, list, progress, rows, cancel and delete through the HTTP API.

The ingest here is the service function called in-process (no Celery); the
integration tests run the same path through a real worker.
"""

import csv
import io
from pathlib import Path

import pytest
from django.core.files.storage import storages

from csvault.datasets.models import Dataset, ProcessedData
from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.purge import dataset_purge
from csvault.pipeline.scan import dataset_scan
from tests.csvdata import HEADER, MARKER, to_csv, tricky_rows
from tests.helpers import ingest, read_all_rows, stored_names, stored_rows, upload

pytestmark = pytest.mark.django_db


def test_upload_answers_201_with_a_pending_dataset(api):
    content = to_csv(tricky_rows(3))
    response = upload(api, content, name="my data")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending"
    assert body["name"] == "my data"
    assert body["size"] == len(content)
    assert len(body["sha256"]) == 64
    assert set(body) >= {
        "id", "name", "status", "row_count", "columns", "size", "sha256",
        "progress", "error", "created_at", "finished_at",
    }  # fmt: skip


def test_the_stored_file_is_encrypted(api):
    content = to_csv(tricky_rows(50))
    dataset = Dataset.objects.get(id=upload(api, content).json()["id"])
    with storages["datasets"].open(dataset.storage_key, "rb") as fh:
        stored = fh.read()
    assert MARKER.encode() not in stored
    assert b"name 2" not in stored
    assert len(stored) > len(content)


def test_rows_come_back_value_for_value_in_file_order(api):
    rows = tricky_rows(2500)
    dataset_id = ingest(upload(api, to_csv(rows)))
    detail = api.get(f"/api/datasets/{dataset_id}/").json()
    assert detail["status"] == "completed"
    assert detail["row_count"] == 2500
    assert detail["columns"] == HEADER
    assert detail["progress"]["percent"] == 100.0
    columns, got = read_all_rows(api, dataset_id, limit=999)
    assert columns == HEADER
    assert [r["row"] for r in got] == list(range(1, 2501))
    assert [r["values"] for r in got] == rows


@pytest.mark.parametrize(
    ("lineterminator", "final_newline"),
    [("\n", True), ("\r\n", True), ("\n", False), ("\r\n", False)],
    ids=["lf", "crlf", "lf-no-final-newline", "crlf-no-final-newline"],
)
def test_line_endings_and_missing_final_newline_keep_every_value(
    api, lineterminator, final_newline
):
    rows = tricky_rows(200, seed=3)
    content = to_csv(rows, lineterminator=lineterminator, final_newline=final_newline)
    dataset_id = ingest(upload(api, content))
    assert [r["values"] for r in read_all_rows(api, dataset_id)[1]] == rows


def test_semicolon_files_without_header_get_numbered_columns(api):
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=";").writerows([["1", "a;b"], ["2", ""]])
    dataset_id = ingest(upload(api, out.getvalue().encode(), has_header="false", delimiter=";"))
    columns, rows = read_all_rows(api, dataset_id)
    assert columns == ["column_1", "column_2"]
    assert [r["values"] for r in rows] == [["1", "a;b"], ["2", ""]]


def test_a_ragged_file_fails_naming_its_row_and_keeps_no_rows(api):
    content = b"a,b,c\n1,2,3\n4,5,6\n7,8\n9,10,11\n"
    dataset_id = ingest(upload(api, content))
    detail = api.get(f"/api/datasets/{dataset_id}/").json()
    assert detail["status"] == "failed"
    assert detail["error"]["code"] == "ragged_row"
    assert detail["error"]["row"] == 3
    assert "Row 3" in detail["error"]["message"]
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()
    response = api.get(f"/api/datasets/{dataset_id}/rows/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_ready"


def test_a_ragged_row_after_several_batches_leaves_no_rows(api, settings):
    settings.CSVAULT_INGEST_BATCH_ROWS = 10
    content = to_csv(tricky_rows(95)) + b"only,three,fields\r\n"
    dataset_id = ingest(upload(api, content))
    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.status == "failed"
    assert dataset.error is not None
    assert dataset.error["row"] == 96
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()


def test_invalid_utf8_fails_naming_the_byte_offset(api):
    content = b"a,b\n1,2\n3,\xff\n"
    dataset_id = ingest(upload(api, content, encoding="utf-8"))
    error = api.get(f"/api/datasets/{dataset_id}/").json()["error"]
    assert error["code"] == "invalid_utf8"
    assert error["offset"] == 10


def test_progress_reports_the_contract_fields(api):
    dataset_id = ingest(upload(api, to_csv(tricky_rows(10))))
    progress = api.get(f"/api/datasets/{dataset_id}/progress/").json()
    assert progress["status"] == "completed"
    assert progress["rows_processed"] == 10
    assert progress["bytes_processed"] == progress["bytes_total"]
    assert progress["percent"] == 100.0
    assert set(progress) == {
        "status", "rows_processed", "bytes_processed", "bytes_total",
        "percent", "rows_per_second", "eta_seconds",
    }  # fmt: skip


def test_a_pending_dataset_reports_zero_progress(api):
    dataset_id = upload(api, to_csv(tricky_rows(10))).json()["id"]
    progress = api.get(f"/api/datasets/{dataset_id}/progress/").json()
    assert progress["status"] == "pending"
    assert progress["percent"] == 0.0
    assert progress["rows_per_second"] is None


def test_rows_pagination_caps_the_limit(api):
    dataset_id = ingest(upload(api, to_csv(tricky_rows(5))))
    response = api.get(f"/api/datasets/{dataset_id}/rows/?limit=100000")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_rows_after_returns_the_following_rows_and_a_next_link(api):
    dataset_id = ingest(upload(api, to_csv(tricky_rows(30))))
    body = api.get(f"/api/datasets/{dataset_id}/rows/?after=10&limit=5").json()
    assert [r["row"] for r in body["results"]] == [11, 12, 13, 14, 15]
    assert body["next"].endswith(f"/api/datasets/{dataset_id}/rows/?after=15&limit=5")
    last = api.get(f"/api/datasets/{dataset_id}/rows/?after=25&limit=5").json()
    assert [r["row"] for r in last["results"]] == [26, 27, 28, 29, 30]
    assert last["next"] is None


def test_the_list_shows_only_the_callers_datasets_newest_first(api, other_api):
    first = upload(api, b"a\n1\n").json()["id"]
    second = upload(api, b"a\n2\n").json()["id"]
    upload(other_api, b"a\n3\n")
    body = api.get("/api/datasets/").json()
    assert [d["id"] for d in body["results"]] == [second, first]


def test_the_list_filters_by_name_and_status_and_pages_keep_the_filters(api, other_api):
    ingest(upload(api, b"a\n1\n", name="Sales 2025"))
    ingest(upload(api, b"a\n2\n", name="sales 2026"))
    ingest(upload(api, b"a\n3\n", name="costs"))
    ingest(upload(api, b"a\n1,2\n", name="sales broken"))
    ingest(upload(other_api, b"a\n4\n", name="sales of mallory"))

    def names(query: str) -> list[str]:
        body = api.get(f"/api/datasets/?{query}").json()
        return [d["name"] for d in body["results"]]

    assert names("search=SALES") == ["sales broken", "sales 2026", "Sales 2025"]
    assert names("search=sales&status=completed") == ["sales 2026", "Sales 2025"]
    assert names("status=failed") == ["sales broken"]
    assert names("search=nothing") == []
    assert names("search=") == ["sales broken", "costs", "sales 2026", "Sales 2025"]
    # The next page keeps the filters.
    first = api.get("/api/datasets/?search=sales&status=completed&page_size=1").json()
    assert [d["name"] for d in first["results"]] == ["sales 2026"]
    second = api.get(first["next"]).json()
    assert [d["name"] for d in second["results"]] == ["Sales 2025"]
    assert second["next"] is None


def test_the_list_refuses_an_unknown_status_filter(api):
    response = api.get("/api/datasets/?status=done")
    assert response.status_code == 400
    assert "status" in response.json()["error"]["fields"]


def test_upload_rejects_an_empty_file(api):
    response = upload(api, b"")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "empty_file"


def test_upload_rejects_binary_content_with_415(api):
    response = upload(api, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", filename="pic.csv")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "not_csv"


def test_upload_rejects_a_non_multipart_body_with_415(api):
    response = api.post("/api/datasets/", {"file": "a,b"}, format="json")
    assert response.status_code == 415


def test_upload_requires_the_file_field(api):
    response = api.post("/api/datasets/", {"name": "x"}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["error"]["fields"]


def test_upload_over_the_limit_answers_413_and_leaves_no_temp_file(api, settings):
    settings.CSVAULT_MAX_UPLOAD_BYTES = 1000
    before = set(Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir())
    response = upload(api, b"a,b\n" + b"1,2\n" * 400)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert set(Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir()) == before
    assert not Dataset.objects.exists()


def test_upload_rejects_two_files(api):
    one, two = io.BytesIO(b"a\n1\n"), io.BytesIO(b"a\n2\n")
    one.name, two.name = "one.csv", "two.csv"
    response = api.post("/api/datasets/", {"file": [one, two]}, format="multipart")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "one_file_expected"


def test_upload_ignores_owner_and_status_fields(api, other_user):
    response = upload(api, b"a\n1\n", owner=other_user.id, status="completed", row_count=99)
    dataset = Dataset.objects.get(id=response.json()["id"])
    assert dataset.owner.username == "alice"
    assert dataset.status == "pending"
    assert dataset.row_count is None


def test_upload_shows_a_sanitised_filename(api):
    response = upload(api, b"a\n1\n", filename="evil\u202etxt.csv")
    assert response.json()["filename"] == "eviltxt.csv"
    dataset = Dataset.objects.get(id=response.json()["id"])
    assert str(dataset.id) in dataset.storage_key


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("get", ""),
        ("delete", ""),
        ("get", "progress/"),
        ("get", "rows/"),
        ("post", "cancel/"),
    ],
)
def test_another_users_dataset_answers_404(api, other_api, method, suffix):
    dataset_id = ingest(upload(api, b"a\n1\n"))
    response = getattr(other_api, method)(f"/api/datasets/{dataset_id}/{suffix}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert Dataset.objects.filter(id=dataset_id, status="completed").exists()


def test_delete_shreds_the_key_at_once_and_the_purge_removes_the_rest(api):
    dataset_id = ingest(upload(api, to_csv(tricky_rows(20))))
    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.storage_key in stored_names()

    assert api.delete(f"/api/datasets/{dataset_id}/").status_code == 204

    # From the response on: gone for the API, and the key to its data is destroyed.
    assert api.get(f"/api/datasets/{dataset_id}/rows/").status_code == 404
    assert api.get(f"/api/datasets/{dataset_id}/").status_code == 404
    assert dataset_id not in [d["id"] for d in api.get("/api/datasets/").json()["results"]]
    assert api.delete(f"/api/datasets/{dataset_id}/").status_code == 404
    shredded = Dataset.objects.get(id=dataset_id)
    assert bytes(shredded.wrapped_key) == b""
    assert shredded.deleted_at is not None
    # The background purge (the task's body) removes rows, file and record.
    assert dataset_purge(dataset_id=dataset.id) is True
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()
    assert not Dataset.objects.filter(id=dataset_id).exists()
    assert dataset.storage_key not in stored_names()
    assert dataset_purge(dataset_id=dataset.id) is False


def test_delete_cancels_a_dataset_that_is_not_finished(api):
    dataset_id = upload(api, to_csv(tricky_rows(20))).json()["id"]
    assert api.delete(f"/api/datasets/{dataset_id}/").status_code == 204
    assert Dataset.objects.get(id=dataset_id).status == "cancelled"
    assert dataset_scan(dataset_id=dataset_id, on_clean=None).status == "skipped"
    assert dataset_ingest(dataset_id=dataset_id).status == "skipped"


def test_cancel_stops_a_pending_dataset_and_it_is_never_ingested(api):
    dataset_id = upload(api, to_csv(tricky_rows(20))).json()["id"]
    response = api.post(f"/api/datasets/{dataset_id}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert dataset_ingest(dataset_id=dataset_id).status == "skipped"
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()


def test_cancel_leaves_a_completed_dataset_completed(api):
    dataset_id = ingest(upload(api, b"a\n1\n"))
    assert api.post(f"/api/datasets/{dataset_id}/cancel/").json()["status"] == "completed"


def test_ingesting_twice_writes_each_row_once(api):
    dataset_id = ingest(upload(api, to_csv(tricky_rows(30))))
    assert dataset_ingest(dataset_id=dataset_id).status == "skipped"
    assert [n for n, _ in stored_rows(dataset_id)] == list(range(1, 31))
