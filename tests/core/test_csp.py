"""The Content-Security-Policy header (django-csp, config/settings.py) on every HTML answer:
the web app's pages, the admin, the API docs, the browsable API and Django's error pages;
and on the JSON answers too, where it is harmless. tests/web/test_api_docs.py checks in a
browser that the pages work under it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from tests.helpers import rates

pytestmark = pytest.mark.django_db

POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "font-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}


def directives(header: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in header.split(";"))):
        name, *values = part.split()
        parsed[name] = sorted(values)
    return parsed


@pytest.fixture
def admin_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw-root")


@pytest.fixture
def alice(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def root(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def _server_error(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Django's 500 answer (handler500) for an exception no view expected."""
    from csvault.web import views

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(views.LoginView, "get", broken)
    return Client(raise_request_exception=False).get("/login/")


def _throttled_login(settings: Any) -> Any:
    rates(settings, login="1/min")
    client = Client()
    client.post("/login/", {"username": "alice", "password": "nope"})
    return client.post("/login/", {"username": "alice", "password": "nope"})


#: name -> (how to get the answer, its status, whether it is HTML)
ANSWERS: dict[str, tuple[Callable[..., Any], int, bool]] = {
    "login page": (lambda c: Client().get("/login/"), 200, True),
    "home page": (lambda c: c["alice"].get("/"), 200, True),
    "dataset page": (lambda c: c["alice"].get(f"/datasets/{uuid.uuid4()}/"), 200, True),
    "throttled login": (lambda c: _throttled_login(c["settings"]), 429, True),
    "CSRF failure page": (
        lambda c: Client(enforce_csrf_checks=True).post("/login/", {"username": "alice"}),
        403,
        True,
    ),
    "admin login": (lambda c: Client().get("/admin/login/"), 200, True),
    "admin index": (lambda c: c["root"].get("/admin/"), 200, True),
    "admin change list": (lambda c: c["root"].get("/admin/auth/user/"), 200, True),
    "admin change form": (
        lambda c: c["root"].get(f"/admin/auth/user/{c['admin_user'].pk}/change/"),
        200,
        True,
    ),
    "admin audit events": (lambda c: c["root"].get("/admin/audit/auditevent/"), 200, True),
    "API docs": (lambda c: Client().get("/api/docs/"), 200, True),
    "browsable API": (
        lambda c: c["alice"].get("/api/datasets/", HTTP_ACCEPT="text/html"),
        200,
        True,
    ),
    "server error": (lambda c: _server_error(c["monkeypatch"]), 500, False),
    "unknown URL": (lambda c: Client().get("/no-such-page/"), 404, False),
    "API answer": (lambda c: c["alice"].get("/api/datasets/"), 200, False),
    "API docs script": (lambda c: Client().get("/api/docs/", {"script": ""}), 200, False),
}


@pytest.mark.parametrize("name", ANSWERS)
def test_every_answer_carries_the_policy_and_no_inline_script_is_allowed(
    name: str,
    alice: Client,
    root: Client,
    admin_user: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    get, status, html = ANSWERS[name]
    context = {
        "alice": alice,
        "root": root,
        "admin_user": admin_user,
        "settings": settings,
        "monkeypatch": monkeypatch,
    }
    response = get(context)
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("text/html") == html
    policy = directives(response["Content-Security-Policy"])
    assert policy == {name: sorted(values) for name, values in POLICY.items()}
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
