"""Answers that carry decrypted data must not be kept by a browser or proxy cache."""

from __future__ import annotations

from tests.helpers import ingest, upload


def test_every_dataset_answer_says_no_store(api):
    dataset_id = ingest(upload(api, b"name,city\nJos\xc3\xa9,K\xc3\xb6ln\n"))
    for path in ["", "progress/", "rows/", "profile/", "events/", "export/"]:
        response = api.get(f"/api/datasets/{dataset_id}/{path}")
        assert response.status_code == 200, (path, response.content)
        assert response["Cache-Control"] == "no-store", path
    assert api.get("/api/datasets/")["Cache-Control"] == "no-store"
    # An error answer too, and an anonymous one.
    assert api.get("/api/datasets/00000000-0000-0000-0000-000000000000/")["Cache-Control"] == (
        "no-store"
    )


def test_the_token_answer_says_no_store(client, user):
    user.set_password("a-long-passphrase")
    user.save()
    response = client.post(
        "/api/auth/token/", {"username": user.username, "password": "a-long-passphrase"}
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
