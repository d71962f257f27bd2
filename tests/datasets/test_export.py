"""GET /api/datasets/{id}/export/ through the HTTP client: formats, headers, errors, batches."""

import csv
import io
import json
import uuid
from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from csvault.crypto.rows import RowDecryptError
from csvault.datasets.export import ExportIncomplete, neutralise_cell
from csvault.datasets.models import ProcessedData
from tests.csvdata import HEADER, to_csv, tricky_rows
from tests.helpers import block_start, ingest, upload

pytestmark = pytest.mark.django_db


def export(client, dataset_id, query="", **extra):
    return client.get(f"/api/datasets/{dataset_id}/export/{query}", **extra)


def body(response):
    assert response.status_code == 200, response.content
    assert response.streaming
    return b"".join(response.streaming_content)


def parse_csv(data):
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_csv_export_parses_back_to_the_neutralised_rows_in_order(api):
    rows = tricky_rows(300)
    dataset_id = ingest(upload(api, to_csv(rows)))
    response = export(api, dataset_id, "?format=csv")
    data = body(response)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert not data.startswith(b"\xef\xbb\xbf")
    assert data.endswith(b"\r\n")
    parsed = parse_csv(data)
    assert parsed[0] == HEADER
    assert parsed[1:] == [[neutralise_cell(v) for v in row] for row in rows]
    # the formula column: formulas neutralised, plain numbers (-3, +1) kept as numbers
    assert all(
        row[4] in ("-3", "+1") if row[4].lstrip("'") in ("-3", "+1") else row[4].startswith("'")
        for row in parsed[1:]
    )


def test_formula_safe_0_exports_every_cell_exactly_and_numbers_are_never_mangled(api):
    rows = [["-489.86", "=1+2"], ["+1.5e3", " @x"], ["-", "\uff1dA1"]]
    dataset_id = ingest(upload(api, to_csv(rows, header=["n", "f"])))
    safe = parse_csv(body(export(api, dataset_id, "?format=csv")))
    assert safe[1:] == [["-489.86", "'=1+2"], ["+1.5e3", "' @x"], ["'-", "'\uff1dA1"]]
    raw = parse_csv(body(export(api, dataset_id, "?format=csv&formula_safe=0")))
    assert raw[1:] == rows
    bad = export(api, dataset_id, "?formula_safe=maybe")
    assert bad.status_code == 400
    assert "formula_safe" in bad.json()["error"]["fields"]


def test_csv_is_the_default_format(api):
    dataset_id = ingest(upload(api, b"a,b\n1,=2\n"))
    response = export(api, dataset_id)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert body(response) == b"a,b\r\n1,'=2\r\n"


def test_jsonl_export_returns_the_raw_values_exactly(api):
    rows = tricky_rows(300)
    dataset_id = ingest(upload(api, to_csv(rows)))
    response = export(api, dataset_id, "?format=jsonl")
    data = body(response)
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"].endswith(".jsonl")
    lines = data.decode("utf-8").split("\n")
    assert lines[-1] == ""
    records = [json.loads(line) for line in lines[:-1]]
    assert [r["row"] for r in records] == list(range(1, 301))
    assert [list(r["data"]) for r in records] == [HEADER] * 300
    assert [list(r["data"].values()) for r in records] == rows


def test_a_file_without_header_exports_its_generated_column_names(api):
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=";").writerows([["1", "a;b"], ["2", "-x"]])
    content = out.getvalue().encode()
    dataset_id = ingest(upload(api, content, has_header="false", delimiter=";"))
    assert body(export(api, dataset_id)) == b"column_1,column_2\r\n1,a;b\r\n2,'-x\r\n"


def test_a_header_only_dataset_exports_the_header_alone(api):
    dataset_id = ingest(upload(api, b"a,b\n"))
    assert body(export(api, dataset_id)) == b"a,b\r\n"
    assert body(export(api, dataset_id, "?format=jsonl")) == b""


def test_content_disposition_for_a_non_ascii_name_follows_rfc_6266(api):
    dataset_id = ingest(upload(api, b"a\n1\n", name="données été.csv"))
    response = export(api, dataset_id, "?format=csv")
    body(response)
    assert response["Content-Disposition"] == (
        "attachment; filename=\"donnees ete.csv\"; filename*=UTF-8''"
        + quote("données été.csv", safe="")
    )
    assert "filename*=UTF-8''donn%C3%A9es%20%C3%A9t%C3%A9.csv" in response["Content-Disposition"]


def test_a_name_with_path_and_control_characters_is_made_safe(api):
    dataset_id = ingest(upload(api, b"a\n1\n", name='../x"\r\ny.csv'))
    response = export(api, dataset_id, "?format=jsonl")
    body(response)
    assert response["Content-Disposition"] == (
        "attachment; filename=\"_x_y.jsonl\"; filename*=UTF-8''_x%22y.jsonl"
    )


def test_batches_are_complete_and_ordered(api, monkeypatch):
    monkeypatch.setattr("csvault.datasets.export.EXPORT_BATCH_ROWS", 1000)
    rows = tricky_rows(2500)
    dataset_id = ingest(upload(api, to_csv(rows)))
    with CaptureQueriesContext(connection) as queries:
        data = body(export(api, dataset_id, "?format=csv"))
    parsed = parse_csv(data)
    assert len(parsed) == 2501
    assert [row[0] for row in parsed[1:]] == [str(i) for i in range(1, 2501)]
    assert parsed[1:] == [[neutralise_cell(v) for v in row] for row in rows]
    row_queries = [q["sql"] for q in queries.captured_queries if "processeddata" in q["sql"]]
    assert len(row_queries) == 4  # 1000 + 1000 + 500 by row number, no OFFSET; a look past the end
    assert all("OFFSET" not in sql.upper() for sql in row_queries)
    assert all('"row_number" >' in sql for sql in row_queries)


def test_an_exact_multiple_of_the_batch_size_ends_with_an_empty_query(api, monkeypatch):
    monkeypatch.setattr("csvault.datasets.export.EXPORT_BATCH_ROWS", 10)
    rows = tricky_rows(30)
    dataset_id = ingest(upload(api, to_csv(rows)))
    lines = body(export(api, dataset_id, "?format=jsonl")).splitlines()
    assert [json.loads(line)["row"] for line in lines] == list(range(1, 31))


def test_nothing_is_read_before_the_stream_is_consumed(api):
    dataset_id = ingest(upload(api, to_csv(tricky_rows(10))))
    with CaptureQueriesContext(connection) as queries:
        response = export(api, dataset_id)
    assert response.streaming
    assert not [q for q in queries.captured_queries if "processeddata" in q["sql"]]
    assert len(parse_csv(b"".join(response.streaming_content))) == 11


def test_head_answers_the_headers_without_reading_a_row(api):
    dataset_id = ingest(upload(api, to_csv(tricky_rows(10)), name="t.csv"))
    with CaptureQueriesContext(connection) as queries:
        response = api.head(f"/api/datasets/{dataset_id}/export/?format=jsonl")
        assert response.status_code == 200
        assert response["Content-Type"] == "application/x-ndjson"
        assert response["Content-Disposition"].startswith('attachment; filename="t.jsonl"')
        assert b"".join(response.streaming_content) == b""
    assert not [q for q in queries.captured_queries if "processeddata" in q["sql"]]
    assert api.head(f"/api/datasets/{dataset_id}/export/?format=xml").status_code == 400


def test_rows_deleted_mid_stream_break_the_stream_instead_of_truncating_it(api, monkeypatch):
    monkeypatch.setattr("csvault.datasets.export.EXPORT_BATCH_ROWS", 10)
    monkeypatch.setattr("csvault.datasets.export.CHUNK_CHARS", 1)
    monkeypatch.setattr("csvault.datasets.export._CHECK_BLOCK_ROWS", 10)
    dataset_id = ingest(upload(api, to_csv(tricky_rows(50))))
    stream = iter(export(api, dataset_id, "?format=jsonl").streaming_content)
    next(stream)
    ProcessedData.objects.filter(dataset_id=dataset_id).delete()
    with pytest.raises(ExportIncomplete):
        b"".join(stream)


@pytest.mark.parametrize("export_format", ["csv", "jsonl"])
def test_a_missing_row_breaks_the_stream(api, monkeypatch, export_format):
    monkeypatch.setattr("csvault.datasets.export.EXPORT_BATCH_ROWS", 7)
    dataset_id = ingest(upload(api, to_csv(tricky_rows(40))))
    start = block_start(dataset_id, 15)
    ProcessedData.objects.filter(dataset_id=dataset_id, row_number=start).delete()
    response = export(api, dataset_id, f"?format={export_format}")
    assert response.status_code == 200  # the headers are gone before the gap shows
    # A gap inside what one read covers is refused by the reader, a gap that ends a
    # read by the export's count: an error either way, never a shorter file.
    with pytest.raises((RowDecryptError, ExportIncomplete)):
        b"".join(response.streaming_content)


@pytest.mark.parametrize("query", ["?format=csv", "?format=jsonl", ""])
def test_another_users_dataset_answers_404(api, other_api, query):
    dataset_id = ingest(upload(api, b"a\n1\n"))
    response = export(other_api, dataset_id, query)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_an_absent_dataset_answers_404(api):
    response = export(api, "00000000-0000-4000-8000-000000000000", "?format=csv")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_anonymous_answers_401(api):
    dataset_id = ingest(upload(api, b"a\n1\n"))
    response = export(APIClient(), dataset_id, "?format=csv")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert "WWW-Authenticate" in response


def test_a_pending_dataset_answers_409(api):
    dataset_id = upload(api, b"a\n1\n").json()["id"]
    response = export(api, dataset_id, "?format=csv")
    assert response.status_code == 409
    assert not response.streaming
    assert response.json()["error"]["code"] == "not_ready"


def test_a_failed_dataset_answers_409(api):
    dataset_id = ingest(upload(api, b"a,b\n1\n"))
    response = export(api, dataset_id, "?format=jsonl")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_ready"


@pytest.mark.parametrize("value", ["xml", "json", "CSV", "api", ""])
def test_an_unknown_format_answers_400(api, value):
    dataset_id = ingest(upload(api, b"a\n1\n"))
    response = export(api, dataset_id, f"?format={value}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "csv or jsonl" in error["message"]
    assert "format" in error["fields"]


@pytest.mark.parametrize("accept", ["text/csv", "application/xml", "text/html"])
def test_the_accept_header_neither_406s_nor_changes_the_format(api, accept):
    dataset_id = ingest(upload(api, b"a\n1\n"))
    response = export(api, dataset_id, "?format=jsonl", HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert json.loads(body(response)) == {"row": 1, "data": {"a": "1"}}


def test_errors_are_json_even_when_the_client_accepts_csv(api):
    dataset_id = upload(api, b"a\n1\n").json()["id"]
    response = export(api, dataset_id, "?format=csv", HTTP_ACCEPT="text/csv")
    assert response.status_code == 409
    assert response["Content-Type"] == "application/json"


def test_export_is_read_only(api):
    dataset_id = ingest(upload(api, b"a\n1\n"))
    assert api.post(f"/api/datasets/{dataset_id}/export/").status_code == 405


@pytest.mark.parametrize("query", ["?format=csv", "?format=jsonl", ""])
def test_head_by_another_user_answers_like_an_absent_dataset(api, other_api, query):
    dataset_id = ingest(upload(api, b"a\n1\n", name="payroll.csv"))
    theirs = other_api.head(f"/api/datasets/{dataset_id}/export/{query}")
    absent = other_api.head(f"/api/datasets/{uuid.uuid4()}/export/{query}")
    # HEAD answers carry no body: the status and headers must give nothing away.
    assert theirs.status_code == absent.status_code == 404
    assert theirs["Content-Type"] == absent["Content-Type"] == "application/json"
    assert theirs["Content-Length"] == absent["Content-Length"]
    assert sorted(theirs.headers) == sorted(absent.headers)
    assert "Content-Disposition" not in theirs
    assert "payroll" not in str(theirs.headers)


def test_head_by_an_anonymous_caller_answers_401(api):
    dataset_id = ingest(upload(api, b"a\n1\n", name="payroll.csv"))
    response = APIClient().head(f"/api/datasets/{dataset_id}/export/?format=csv")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert "WWW-Authenticate" in response
    assert "Content-Disposition" not in response
    assert "payroll" not in str(response.headers)
