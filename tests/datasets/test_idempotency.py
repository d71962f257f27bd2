"""Idempotency-Key on uploads: a retried upload gets the first dataset back."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import storages

from csvault.datasets.models import Dataset
from tests.helpers import upload

pytestmark = pytest.mark.django_db


def keyed_upload(client, content: bytes, key: str):
    fh = io.BytesIO(content)
    fh.name = "data.csv"
    return client.post("/api/datasets/", {"file": fh}, format="multipart", HTTP_IDEMPOTENCY_KEY=key)


def test_the_same_key_twice_gives_the_same_dataset_and_stores_one_file(api):
    first = keyed_upload(api, b"a\n1\n", "order-42")
    assert first.status_code == 201
    stored = storages["datasets"].listdir("datasets")[1]

    again = keyed_upload(api, b"a\n1\n", "order-42")
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert Dataset.objects.count() == 1
    assert storages["datasets"].listdir("datasets")[1] == stored


def test_keys_are_per_user_and_other_keys_make_new_datasets(api, other_api):
    a = keyed_upload(api, b"a\n1\n", "k1")
    assert keyed_upload(other_api, b"a\n1\n", "k1").json()["id"] != a.json()["id"]
    assert keyed_upload(api, b"a\n1\n", "k2").json()["id"] != a.json()["id"]
    assert upload(api, b"a\n1\n").status_code == 201  # no key: always new
    assert Dataset.objects.count() == 4


def test_a_deleted_datasets_key_can_be_used_again(api):
    first = keyed_upload(api, b"a\n1\n", "k")
    assert api.delete(f"/api/datasets/{first.json()['id']}/").status_code == 204
    second = keyed_upload(api, b"a\n2\n", "k")
    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]


@pytest.mark.parametrize("key", ["x" * 256, "with space", "tab\tkey", "é"])
def test_a_malformed_key_is_refused(api, key):
    response = keyed_upload(api, b"a\n1\n", key)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert not Dataset.objects.exists()


def test_a_replay_that_raced_the_first_upload_keeps_one_dataset(api, monkeypatch):
    # The retry passed the early check before the first upload committed (simulated
    # by making that check miss); the service sees the key under the user lock,
    # drops the second file and hands back the first dataset.
    first = keyed_upload(api, b"a\n1\n", "race")
    stored = storages["datasets"].listdir("datasets")[1]
    monkeypatch.setattr("csvault.datasets.apis.dataset_by_idempotency_key", lambda **kw: None)

    again = keyed_upload(api, b"a\n1\n", "race")

    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Dataset.objects.count() == 1
    assert storages["datasets"].listdir("datasets")[1] == stored
