import time
import uuid

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

ANON_REQUESTS = [
    ("get", "/api/datasets/"),
    ("post", "/api/datasets/"),
    ("get", "/api/datasets/{id}/"),
    ("delete", "/api/datasets/{id}/"),
    ("get", "/api/datasets/{id}/progress/"),
    ("get", "/api/datasets/{id}/rows/"),
    ("post", "/api/datasets/{id}/cancel/"),
]


@pytest.mark.parametrize(("method", "url"), ANON_REQUESTS)
def test_it_answers_401_without_credentials(method, url):
    response = getattr(APIClient(), method)(url.format(id=uuid.uuid4()))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_it_answers_401_for_a_bad_token():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/datasets/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_it_exchanges_username_and_password_for_the_users_token(user):
    response = APIClient().post(
        "/api/auth/token/", {"username": "alice", "password": "pw-alice"}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {"token": user.auth_token.key}


def test_it_refuses_a_wrong_password_with_a_json_error(user):
    response = APIClient().post(
        "/api/auth/token/", {"username": "alice", "password": "wrong"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_createuser_prints_a_working_token_as_its_last_line(capsys):
    call_command("createuser", "bob", "--password", "a-long-passphrase-123")
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert Token.objects.get(key=token).user.username == "bob"
    assert not Token.objects.get(key=token).user.is_staff
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/datasets/").status_code == 200


def test_healthz_needs_no_credentials():
    response = APIClient().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_openapi_schema_and_docs_are_served(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/datasets/{dataset_id}/rows/" in schema.json()["paths"]
    assert api.get("/api/docs/").status_code == 200


def test_an_unknown_url_answers_a_json_404(api):
    response = api.get("/api/nothing-here/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_deactivation_that_bypasses_save_takes_effect_within_seconds(user, settings):
    from django.contrib.auth import get_user_model

    from tests.helpers import wait_until

    settings.CSVAULT_AUTH_CACHE_SECONDS = 1
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=user).key}")
    assert client.get("/api/datasets/").status_code == 200  # the token is now cached
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)  # no signal
    started = time.monotonic()
    wait_until(lambda: client.get("/api/datasets/").status_code == 401, timeout=10)
    assert time.monotonic() - started < 5
