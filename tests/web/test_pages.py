"""The upload page: login (throttled, audited), the page, logout."""

from __future__ import annotations

import io

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from csvault.audit.models import AuditEvent
from tests.helpers import rates

pytestmark = pytest.mark.django_db


def csv_file() -> io.BytesIO:
    fh = io.BytesIO(b"a\n1\n")
    fh.name = "page.csv"
    return fh


def test_the_page_needs_a_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_login_then_the_page_then_logout(user):
    client = Client(enforce_csrf_checks=True)
    page = client.get("/login/")
    assert page.status_code == 200
    token = page.cookies["csrftoken"].value
    response = client.post(
        "/login/", {"username": "alice", "password": "pw-alice", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert response["Location"] == "/"

    home = client.get("/")
    assert home.status_code == 200
    assert b"Upload CSV files" in home.content
    assert b"web/home.js" in home.content
    # The page itself sets the CSRF cookie, readable by its script (not HttpOnly).
    cookie = home.cookies["csrftoken"]
    assert cookie.value
    assert not cookie["httponly"]
    (login,) = AuditEvent.objects.filter(action="login")
    assert (login.username, login.detail) == ("alice", {"via": "session"})

    # The page's script calls the API with the session and that cookie's token.
    listing = client.get("/api/datasets/")
    assert listing.status_code == 200
    assert client.post("/api/datasets/", {"file": csv_file()}).status_code == 403
    sent = client.post("/api/datasets/", {"file": csv_file()}, HTTP_X_CSRFTOKEN=cookie.value)
    assert sent.status_code == 201, sent.content

    out = client.post("/logout/", {"csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert out.status_code == 302
    assert client.get("/").status_code == 302


def test_a_wrong_password_is_refused_and_audited_once(user):
    response = Client().post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"Wrong user name or password" in response.content
    (event,) = AuditEvent.objects.filter(action="login_failed")
    assert event.username == "alice"


def test_login_attempts_on_the_page_are_throttled(user, settings):
    rates(settings, login="2/min")
    client = Client()
    for _ in range(2):
        client.post("/login/", {"username": "alice", "password": "nope"})
    response = client.post("/login/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 429
    assert "Retry-After" in response


def test_every_login_form_shares_one_throttle_and_is_audited(user, settings):
    rates(settings, login="3/min")
    client = Client()
    api = client.post("/api/auth/token/", {"username": "alice", "password": "nope"})
    page = client.post("/login/", {"username": "alice", "password": "nope"})
    admin = client.post("/admin/login/", {"username": "alice", "password": "nope"})
    assert (api.status_code, page.status_code, admin.status_code) == (400, 200, 200)
    # The fourth attempt, on any form, is one too many for this address.
    refused = client.post("/admin/login/", {"username": "alice", "password": "pw-alice"})
    assert refused.status_code == 429
    assert "Retry-After" in refused
    assert (
        client.post("/api/auth/token/", {"username": "alice", "password": "x"}).status_code == 429
    )
    assert AuditEvent.objects.filter(action="login_failed").count() == 3
    assert client.get("/admin/login/").status_code == 200  # the form itself is not counted


def test_the_scripts_and_styles_are_static_files():
    for name in ["common.js", "home.js", "dataset.js", "app.css", "vendor/tus.min.js"]:
        assert finders.find(f"web/{name}"), name
