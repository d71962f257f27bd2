"""Structured logs: request ids, the context on every line, the two formats."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from tests.csvdata import MARKER, to_csv, tricky_rows
from tests.helpers import ROOT

pytestmark = pytest.mark.django_db


def test_it_generates_a_request_id_and_returns_it() -> None:
    first = Client().get("/healthz")["X-Request-ID"]
    second = Client().get("/healthz")["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


def test_it_keeps_a_sane_incoming_request_id() -> None:
    response = Client().get("/healthz", HTTP_X_REQUEST_ID="lb-7f3a:01HZX/abc=")
    assert response["X-Request-ID"] == "lb-7f3a:01HZX/abc="


@pytest.mark.parametrize(
    "hostile",
    ["", "x" * 129, "two words", "id\r\nSet-Cookie: a=b", '"quoted"', "<script>", "naïve", "a;b"],
)
def test_it_replaces_an_insane_incoming_request_id(hostile: str) -> None:
    response = Client().get("/healthz", HTTP_X_REQUEST_ID=hostile)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_every_line_of_a_dataset_request_names_request_user_and_dataset(
    api: Any, user: Any, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    fh = io.BytesIO(to_csv(tricky_rows(1200)))
    fh.name = "data.csv"
    created = api.post(
        "/api/datasets/", {"file": fh}, format="multipart", HTTP_X_REQUEST_ID="upload-1"
    )
    assert created.status_code == 201
    dataset_id = created.json()["id"]
    detail = api.get(f"/api/datasets/{dataset_id}/", HTTP_X_REQUEST_ID="detail-1")
    assert detail["X-Request-ID"] == "detail-1"

    by_request: dict[str, list[dict[str, Any]]] = {}
    for line in log_lines():
        by_request.setdefault(line.get("request_id", ""), []).append(line)
    uploaded = by_request["upload-1"]
    assert any(line["message"] == f"dataset {dataset_id} uploaded: {created.json()['size']} bytes"
               for line in uploaded)  # fmt: skip
    access = [line for line in uploaded if line["logger"] == "csvault.request"]
    assert access
    assert (access[0]["status"], access[0]["method"]) == (201, "POST")
    for line in uploaded:
        assert line["user_id"] == str(user.pk), line
        assert line["dataset_id"] == dataset_id, line
    for line in by_request["detail-1"]:
        assert line["user_id"] == str(user.pk), line
        assert line["dataset_id"] == dataset_id, line
    assert MARKER not in json.dumps(log_lines())


def test_an_anonymous_request_has_no_user_id(log_lines: Callable[[], list[dict[str, Any]]]) -> None:
    assert Client().get("/api/datasets/").status_code == 401
    lines = log_lines()
    access = [line for line in lines if line["logger"] == "csvault.request"]
    assert access
    assert "user_id" not in access[-1]
    assert access[-1]["status"] == 401
    # Django's own "Unauthorized" warning comes after the middleware and still has the id.
    warning = next(line for line in lines if line["logger"] == "django.request")
    assert warning["request_id"] == access[-1]["request_id"]


def _log_one_line(log_format: str) -> str:
    env = {**os.environ, "LOG_FORMAT": log_format, "CSVAULT_DATA_DIR": str(settings.DATA_DIR)}
    code = "import logging; logging.getLogger('csvault.probe').warning('probe %s', 42)"
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return next(line for line in done.stderr.splitlines() if "probe 42" in line)


def test_logs_are_json_by_default() -> None:
    line = json.loads(_log_one_line("json"))
    assert line["message"] == "probe 42"
    assert line["level"] == "WARNING"
    assert line["logger"] == "csvault.probe"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line["time"])


def test_log_format_plain_is_for_people() -> None:
    line = _log_one_line("plain")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \S+ WARNING csvault\.probe probe 42", line), line
