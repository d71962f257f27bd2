"""Access rules: throttles (429 + Retry-After), quotas, login/logout, CSRF, audit events."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core.files.storage import storages
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from csvault.audit.models import AuditAction, AuditEvent
from csvault.core import throttling
from csvault.datasets.models import Dataset
from csvault.pipeline.scan import ScanRetry, dataset_scan
from tests.csvdata import MARKER, to_csv, tricky_rows
from tests.helpers import client_for, free_port, ingest, rates, upload
from tests.scanning.samples import csv_with_cell, eicar

pytestmark = pytest.mark.django_db


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("at", "id"))


# --- throttles ---------------------------------------------------------------------------


def test_reads_over_the_rate_get_429_with_retry_after(api, settings):
    rates(settings, read="3/min")
    for _ in range(3):
        assert api.get("/api/datasets/").status_code == 200
    response = api.get("/api/datasets/")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json()["error"]["code"] == "throttled"


def test_throttles_count_per_user(api, other_api, settings):
    rates(settings, read="2/min")
    api.get("/api/datasets/")
    api.get("/api/datasets/")
    assert api.get("/api/datasets/").status_code == 429
    assert other_api.get("/api/datasets/").status_code == 200


def test_uploads_have_their_own_rate(api, settings):
    rates(settings, upload="1/min")
    assert upload(api, b"a\n1\n").status_code == 201
    response = upload(api, b"a\n2\n")
    assert response.status_code == 429
    assert "Retry-After" in response
    assert api.get("/api/datasets/").status_code == 200
    assert Dataset.objects.count() == 1


def test_writes_over_the_rate_get_429_and_change_nothing(api, other_api, settings):
    rates(settings, write="2/min")
    # Uploads count in their own scope, not in "write".
    ids = [upload(api, f"a\n{n}\n".encode()).json()["id"] for n in range(3)]
    assert api.post(f"/api/datasets/{ids[0]}/cancel/").status_code == 200
    assert api.post(f"/api/datasets/{ids[1]}/cancel/").status_code == 200
    refused = api.delete(f"/api/datasets/{ids[2]}/")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused.json()["error"]["code"] == "throttled"
    assert api.post(f"/api/datasets/{ids[2]}/cancel/").status_code == 429
    # Nothing was done, and the other scopes and users are not held back.
    detail = api.get(f"/api/datasets/{ids[2]}/")
    assert detail.status_code == 200
    assert detail.json()["status"] == "pending"
    assert upload(api, b"a\n4\n").status_code == 201
    theirs = upload(other_api, b"a\n5\n").json()["id"]
    assert other_api.post(f"/api/datasets/{theirs}/cancel/").status_code == 200


def test_anonymous_requests_have_their_own_rate_per_address(user, api, settings):
    rates(settings, anon="2/min")
    schema, json = "/api/schema/", "application/json"
    anonymous = APIClient()
    for _ in range(2):
        assert anonymous.get(schema, HTTP_ACCEPT=json).status_code == 200
    refused = anonymous.get(schema, HTTP_ACCEPT=json)
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused.json()["error"]["code"] == "throttled"
    # Another address, an authenticated caller (read) and a login (login) are not held back.
    assert APIClient(REMOTE_ADDR="192.0.2.7").get(schema, HTTP_ACCEPT=json).status_code == 200
    assert api.get(schema, HTTP_ACCEPT=json).status_code == 200
    login = anonymous.post("/api/auth/token/", {"username": "alice", "password": "pw-alice"})
    assert login.status_code == 200


def test_login_attempts_are_throttled_per_address(user, settings):
    rates(settings, login="2/min")
    client = APIClient()
    for _ in range(2):
        response = client.post("/api/auth/token/", {"username": "alice", "password": "wrong"})
        assert response.status_code == 400
    response = client.post("/api/auth/token/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 429


# --- quotas --------------------------------------------------------------------------------


def test_storage_quota_refuses_what_does_not_fit_and_stores_nothing(api, settings):
    settings.CSVAULT_QUOTA_BYTES = 1000
    first = upload(api, b"a,b\n" + b"1,2\n" * 150)  # 604 bytes
    assert first.status_code == 201
    stored_before = storages["datasets"].listdir("datasets")[1]
    response = upload(api, b"a,b\n" + b"3,4\n" * 150)
    assert response.status_code == 403
    body = response.json()["error"]
    assert body["code"] == "storage_quota_exceeded"
    assert body["quota_bytes"] == 1000
    assert "Delete datasets" in body["message"]
    assert Dataset.objects.count() == 1
    assert storages["datasets"].listdir("datasets")[1] == stored_before
    # Deleting frees the space at once.
    assert api.delete(f"/api/datasets/{first.json()['id']}/").status_code == 204
    assert upload(api, b"a,b\n" + b"3,4\n" * 150).status_code == 201


def test_too_many_unfinished_datasets_get_429_until_one_finishes(api, settings):
    settings.CSVAULT_MAX_ACTIVE_DATASETS = 1
    first = upload(api, b"a\n1\n")
    response = upload(api, b"a\n2\n")
    assert response.status_code == 429
    assert response["Retry-After"] == "30"
    assert response.json()["error"]["code"] == "too_many_active_datasets"
    ingest(first)
    assert upload(api, b"a\n3\n").status_code == 201


# --- login, logout, inactive users -----------------------------------------------------------


def test_login_gives_a_token_and_logout_revokes_it_at_once(user):
    client = APIClient()
    token = client.post("/api/auth/token/", {"username": "alice", "password": "pw-alice"}).json()[
        "token"
    ]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/datasets/").status_code == 200

    assert client.post("/api/auth/logout/").status_code == 204
    response = client.get("/api/datasets/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"

    again = APIClient().post("/api/auth/token/", {"username": "alice", "password": "pw-alice"})
    assert again.json()["token"] != token
    assert [e.username for e in events(AuditAction.LOGIN)] == ["alice", "alice"]
    assert [e.username for e in events(AuditAction.LOGOUT)] == ["alice"]


def test_a_request_racing_a_logout_cannot_put_the_revoked_token_back(user, monkeypatch):
    """A request that read the token from the database just before a logout committed
    fills the cache after the logout cleared it: the token must stay revoked."""
    from rest_framework.authentication import TokenAuthentication

    from csvault.core.authentication import CachedTokenAuthentication

    client = APIClient()
    token = client.post("/api/auth/token/", {"username": "alice", "password": "pw-alice"}).json()[
        "token"
    ]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.post("/api/auth/logout/").status_code == 204

    # The racing request: its database read happened before the logout (so it holds
    # the live user), its cache fill happens now.
    monkeypatch.setattr(
        TokenAuthentication,
        "authenticate_credentials",
        lambda self, key: (user, Token(key=key, user=user)),
    )
    CachedTokenAuthentication().authenticate_credentials(token)
    monkeypatch.undo()

    assert client.get("/api/datasets/").status_code == 401


def test_an_inactive_user_gets_401(user, api):
    user.is_active = False
    user.save()
    assert api.get("/api/datasets/").status_code == 401
    response = APIClient().post("/api/auth/token/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 400


def test_a_failed_login_is_audited_with_the_name_tried(user):
    APIClient().post("/api/auth/token/", {"username": "alice", "password": "nope"})
    (event,) = events(AuditAction.LOGIN_FAILED)
    assert event.username == "alice"
    assert event.user is None
    assert event.ip == "127.0.0.1"
    assert "nope" not in str(event.detail)


def test_session_writes_need_the_csrf_token(user):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="alice", password="pw-alice")
    assert client.get("/api/datasets/").status_code == 200
    refused = upload(client, b"a\n1\n")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]["message"]
    client.get("/admin/login/")  # any page that sets the CSRF cookie
    client.credentials(HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    assert upload(client, b"a\n1\n").status_code == 201


# --- audit ---------------------------------------------------------------------------------


def test_the_life_of_a_dataset_is_audited_without_cell_values(api, other_api, user, other_user):
    response = upload(api, to_csv(tricky_rows(20)))
    dataset_id = ingest(response)
    assert other_api.get(f"/api/datasets/{dataset_id}/").status_code == 404
    assert api.get(f"/api/datasets/{dataset_id}/export/").status_code == 200
    assert api.delete(f"/api/datasets/{dataset_id}/").status_code == 204

    trail = list(AuditEvent.objects.filter(dataset_id=dataset_id).order_by("at", "id"))
    assert [(e.action, e.username) for e in trail] == [
        ("upload", "alice"),
        ("scan_clean", "alice"),
        ("access_denied", "mallory"),
        ("export", "alice"),
        ("delete", "alice"),
    ]
    assert trail[0].ip == "127.0.0.1"
    assert trail[0].detail["size"] == len(to_csv(tricky_rows(20)))
    assert trail[3].detail == {"format": "csv"}
    for event in AuditEvent.objects.all():
        assert MARKER not in str(event.detail)


def test_a_malware_verdict_is_audited(api):
    dataset_id = ingest(upload(api, csv_with_cell(eicar(), start=300)))
    (event,) = events(AuditAction.SCAN_REJECTED)
    assert str(event.dataset_id) == dataset_id
    assert event.username == "alice"
    assert "Eicar" in event.detail["signature"] or "EICAR" in event.detail["signature"]


def test_a_cancel_is_audited_with_its_dataset_and_user(api, other_api, user):
    dataset_id = upload(api, b"a\n1\n").json()["id"]
    assert other_api.post(f"/api/datasets/{dataset_id}/cancel/").status_code == 404
    assert events(AuditAction.CANCEL) == []
    assert api.post(f"/api/datasets/{dataset_id}/cancel/").status_code == 200
    (event,) = events(AuditAction.CANCEL)
    assert str(event.dataset_id) == dataset_id
    assert (event.user, event.username, event.ip) == (user, "alice", "127.0.0.1")


# A scan that finds no scanner hands the dataset back on a fresh connection (outside a
# test's transaction, as in a worker).
@pytest.mark.django_db(transaction=True)
def test_a_scan_given_up_for_want_of_a_scanner_is_audited_for_the_owner(api, user, settings):
    settings.CLAMD_URL = f"tcp://127.0.0.1:{free_port()}"  # nothing listens
    settings.CSVAULT_SCAN_MAX_ATTEMPTS = 2
    dataset_id = upload(api, b"a\n1\n").json()["id"]
    with pytest.raises(ScanRetry):
        dataset_scan(dataset_id=dataset_id, on_clean=None)
    assert events(AuditAction.SCAN_FAILED) == []  # a retry is not a failure
    assert dataset_scan(dataset_id=dataset_id, on_clean=None).status == "failed"
    (event,) = events(AuditAction.SCAN_FAILED)
    assert str(event.dataset_id) == dataset_id
    assert (event.user, event.username) == (user, "alice")
    assert event.detail == {"reason": "scanner_unavailable"}


def test_a_refused_upload_is_audited(api):
    upload(api, b"")
    (event,) = events(AuditAction.UPLOAD_REFUSED)
    assert event.detail == {"code": "empty_file"}


def test_audit_events_are_read_only_in_the_admin(make_user, api):
    upload(api, b"a\n1\n")
    admin = make_user("root")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client = client_for(admin)
    client.force_login(admin)
    listing = client.get("/admin/audit/auditevent/")
    assert listing.status_code == 200
    assert b"alice" in listing.content
    assert client.get("/admin/audit/auditevent/add/").status_code == 403


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now


def test_an_embedded_mode_window_ends_when_its_retry_after_says(
    user, settings, tmp_path, monkeypatch
):
    # The file cache of embedded mode: its incr renews an entry's expiry.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }
    rates(settings, login="3/min")
    clock = _Clock()
    monkeypatch.setattr(throttling, "time", clock)
    client = APIClient()

    def attempt() -> Any:
        return client.post("/api/auth/token/", {"username": "alice", "password": "wrong"})

    for _ in range(3):  # spread over the window
        assert attempt().status_code == 400
        clock.now += 15
    refused = attempt()  # at +45 s
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == 15
    clock.now += 16  # the window is over, as Retry-After said
    assert attempt().status_code == 400


def test_throttles_hold_when_the_cache_is_down(user, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 0.2},
        }
    }
    rates(settings, login="3/min")
    client = APIClient(REMOTE_ADDR="198.51.100.77")
    answers = [
        client.post("/api/auth/token/", {"username": "alice", "password": "wrong"}).status_code
        for _ in range(5)
    ]
    assert answers == [400, 400, 400, 429, 429]


def test_throttles_hold_with_the_cache_turned_off(user, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    rates(settings, login="2/min")
    client = APIClient(REMOTE_ADDR="198.51.100.78")
    answers = [
        client.post("/api/auth/token/", {"username": "alice", "password": "wrong"}).status_code
        for _ in range(3)
    ]
    assert answers == [400, 400, 429]


def test_the_audit_address_follows_the_trusted_proxy_setting(user, settings):
    def login_ip() -> str | None:
        client = APIClient(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.4")
        client.post("/api/auth/token/", {"username": "alice", "password": "x"})
        return AuditEvent.objects.filter(action="login_failed").latest("id").ip

    # No proxy trusted: the header is a client's word; the peer address counts.
    assert login_ip() == "10.0.0.2"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}  # DRF reloads
    assert login_ip() == "198.51.100.4"  # the address our one proxy saw
