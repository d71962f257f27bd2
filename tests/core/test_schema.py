"""The OpenAPI schema at /api/schema/: valid, every operation's error answers with the one
Error body (the shape csvault/core/exceptions.py writes), the Idempotency-Key header, and the
tus endpoints with their headers, checked against what the server answers."""

from __future__ import annotations

import re
import uuid
from typing import Any

import jsonschema
import pytest
from drf_spectacular.validation import validate_schema
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from csvault.core.errors import UploadRejected
from csvault.core.schema import SPECIFIC
from csvault.datasets.apis import _idempotency_key
from tests.helpers import rates, upload

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
ERROR_REF = {"$ref": "#/components/schemas/Error"}


@pytest.fixture
def schema(api: APIClient) -> dict[str, Any]:
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_the_schema_is_valid_openapi_3(schema: dict[str, Any]) -> None:
    validate_schema(schema)


def test_every_operation_documents_its_error_answers_with_the_error_body(
    schema: dict[str, Any],
) -> None:
    for (method, path), operation in operations(schema).items():
        where = f"{method} {path}"
        responses = operation["responses"]
        anonymous = path == "/api/auth/token/"
        if not anonymous:
            assert {"401", "429"} <= responses.keys(), where
        assert responses["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}, where
        if "{dataset_id}" in path:
            assert "404" in responses, where
        if "requestBody" in operation or any(
            p["in"] == "query" for p in operation.get("parameters", [])
        ):
            assert "400" in responses, where
        for status, answer in responses.items():
            if int(status) < 400:
                continue
            assert answer["description"], where
            if method == "HEAD":
                assert "content" not in answer, where  # a HEAD answer has no body
            else:
                assert answer["content"] == {"application/json": {"schema": ERROR_REF}}, where


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("POST", "/api/auth/token/", {"400", "415", "429"}),
        ("POST", "/api/auth/logout/", {"401", "403", "429"}),
        ("GET", "/api/datasets/", {"400", "401", "404", "429"}),
        ("POST", "/api/datasets/", {"400", "401", "403", "411", "413", "415", "429", "503"}),
        ("GET", "/api/datasets/{dataset_id}/", {"401", "404", "429", "503"}),
        ("DELETE", "/api/datasets/{dataset_id}/", {"401", "403", "404", "429"}),
        ("GET", "/api/datasets/{dataset_id}/rows/", {"400", "401", "404", "409", "429", "500"}),
        ("GET", "/api/datasets/{dataset_id}/profile/", {"401", "404", "409", "429", "500"}),
        ("GET", "/api/datasets/{dataset_id}/export/", {"400", "401", "404", "409", "429"}),
        ("HEAD", "/api/datasets/{dataset_id}/export/", {"400", "401", "404", "409", "429"}),
        ("POST", "/api/datasets/{dataset_id}/cancel/", {"401", "403", "404", "429"}),
        ("OPTIONS", "/api/uploads/", {"401", "429"}),
        ("POST", "/api/uploads/", {"400", "401", "403", "411", "412", "413", "415", "429"}),
        ("HEAD", "/api/uploads/{dataset_id}", {"401", "404", "412", "429"}),
        ("PATCH", "/api/uploads/{dataset_id}", {"400", "404", "409", "412", "415", "460", "503"}),
        ("DELETE", "/api/uploads/{dataset_id}", {"401", "403", "404", "412", "429"}),
    ],
)
def test_the_error_answers_of_each_kind_of_operation(
    schema: dict[str, Any], method: str, path: str, statuses: set[str]
) -> None:
    responses = operations(schema)[method, path]["responses"]
    assert statuses <= responses.keys()


def test_every_specific_answer_names_an_operation_of_the_schema(schema: dict[str, Any]) -> None:
    """A route renamed without its entry in csvault/core/schema.py fails here."""
    documented = operations(schema)
    for key, answers in SPECIFIC.items():
        assert key in documented, key
        for status, description in answers.items():
            assert documented[key]["responses"][str(status)]["description"].startswith(description)


def _error_component(schema: dict[str, Any]) -> dict[str, Any]:
    component: dict[str, Any] = schema["components"]["schemas"]["Error"]
    return component


def test_the_error_component_describes_the_bodies_the_server_sends(
    schema: dict[str, Any], api: APIClient, user: Any, settings: Any
) -> None:
    error = _error_component(schema)
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]
    # A dataset's own error object is another component (its scan or ingest failed).
    assert "DatasetError" in schema["components"]["schemas"]

    dataset = upload(api, b"a,b\n1,2\n").json()["id"]
    bodies = [
        APIClient().get("/api/datasets/").json(),  # 401
        api.get(f"/api/datasets/{uuid.uuid4()}/").json(),  # 404
        api.get("/api/datasets/", {"status": "nonsense"}).json(),  # 400 with fields
    ]
    not_ready = api.get(f"/api/datasets/{dataset}/rows/")  # 409 with the status
    rates(settings, read="1/min")
    throttled = api.get(f"/api/datasets/{dataset}/rows/")
    bodies += [not_ready.json(), throttled.json()]
    assert (not_ready.status_code, throttled.status_code) == (409, 429)
    assert bodies[2]["error"]["fields"]
    assert bodies[3]["error"]["status"] == "pending"
    for body in bodies:
        jsonschema.validate(body, error)
    for wrong in ({"code": "x"}, {"error": {"message": "no code"}}, {"error": "text"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, error)


def test_post_datasets_documents_the_idempotency_key_as_the_server_reads_it(
    schema: dict[str, Any],
) -> None:
    operation = operations(schema)["POST", "/api/datasets/"]
    (key,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header"
    assert not key.get("required", False)
    assert "invalid_idempotency_key" in key["description"]
    replay = operation["responses"]["200"]
    assert replay["headers"]["Idempotent-Replayed"]["schema"]["enum"] == ["true"]
    assert "201" in operation["responses"]

    # The documented pattern is exactly the rule csvault/datasets/apis.py applies.
    factory = APIRequestFactory()
    samples = ["k", "order-42:retry", "!~", "a" * 255, "a" * 256, "two words", "clé", "tab\tkey"]
    for sample in samples:
        request = Request(factory.post("/api/datasets/", HTTP_IDEMPOTENCY_KEY=sample))
        try:
            accepted = _idempotency_key(request) == sample
        except UploadRejected:
            accepted = False
        assert bool(re.fullmatch(key["schema"]["pattern"], sample)) == accepted, sample


def _headers(answer: dict[str, Any]) -> set[str]:
    return set(answer.get("headers", {}))


def test_the_tus_endpoints_and_their_headers_are_documented(schema: dict[str, Any]) -> None:
    documented = operations(schema)
    assert {("POST", "/api/uploads/"), ("OPTIONS", "/api/uploads/")} <= documented.keys()
    upload_ops = {("HEAD", "/api/uploads/{dataset_id}"), ("PATCH", "/api/uploads/{dataset_id}")}
    assert upload_ops | {("DELETE", "/api/uploads/{dataset_id}")} <= documented.keys()

    def request_headers(method: str, path: str) -> dict[str, dict[str, Any]]:
        parameters = documented[method, path].get("parameters", [])
        return {p["name"]: p for p in parameters if p["in"] == "header"}

    for method, path in [
        ("POST", "/api/uploads/"),
        ("HEAD", "/api/uploads/{dataset_id}"),
        ("PATCH", "/api/uploads/{dataset_id}"),
        ("DELETE", "/api/uploads/{dataset_id}"),
    ]:
        tus = request_headers(method, path)["Tus-Resumable"]
        assert tus["required"], (method, path)
        assert tus["schema"]["enum"] == ["1.0.0"], (method, path)
    create = request_headers("POST", "/api/uploads/")
    assert create["Upload-Length"]["required"]
    assert {"Upload-Metadata", "Upload-Checksum"} <= create.keys()
    assert request_headers("PATCH", "/api/uploads/{dataset_id}")["Upload-Offset"]["required"]
    patch = documented["PATCH", "/api/uploads/{dataset_id}"]
    assert "application/offset+octet-stream" in patch["requestBody"]["content"]

    created = documented["POST", "/api/uploads/"]["responses"]["201"]
    assert {"Location", "Upload-Offset", "Upload-Expires", "Tus-Resumable"} <= _headers(created)
    head = documented["HEAD", "/api/uploads/{dataset_id}"]["responses"]["200"]
    assert {"Upload-Offset", "Upload-Length"} <= _headers(head)
    assert "Upload-Offset" in _headers(patch["responses"]["204"])
    discovery = documented["OPTIONS", "/api/uploads/"]["responses"]["204"]
    assert {"Tus-Version", "Tus-Extension", "Tus-Max-Size"} <= _headers(discovery)


def test_the_tus_headers_documented_are_those_the_server_sends(
    schema: dict[str, Any], api: APIClient
) -> None:
    documented = operations(schema)
    tus = {"Tus-Resumable": "1.0.0"}

    discovery = api.options("/api/uploads/")
    assert discovery.status_code == 204
    sent = {name for name in discovery.headers if name.startswith("Tus-")}
    assert sent == _headers(documented["OPTIONS", "/api/uploads/"]["responses"]["204"])

    created = api.post("/api/uploads/", headers={**tus, "Upload-Length": "10"})
    assert created.status_code == 201, created.content
    expected = _headers(documented["POST", "/api/uploads/"]["responses"]["201"])
    assert expected <= set(created.headers)
    url = created["Location"]

    head = api.head(url, headers=tus)
    assert head.status_code == 200
    assert _headers(documented["HEAD", "/api/uploads/{dataset_id}"]["responses"]["200"]) <= set(
        head.headers
    )
    wrong_version = api.head(url, headers={"Tus-Resumable": "0.2.2"})
    assert wrong_version.status_code == 412
    assert "412" in documented["HEAD", "/api/uploads/{dataset_id}"]["responses"]
