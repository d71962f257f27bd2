"""The hot reads (csvault/datasets/hotreads.py): answered from Redis before Django, byte
for byte what Django answers, counted once by the throttle, per owner, never stale after
a write, logged and counted in the metrics; everything else is left to Django."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterable
from hashlib import sha256
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from prometheus_client import REGISTRY

from csvault.core.throttling import user_counter_key
from csvault.datasets.hotreads import HotReads
from tests.helpers import client_for, ingest, rates, upload

REDIS_CACHE = django_settings.CACHES["default"]["BACKEND"] == "django_redis.cache.RedisCache"
needs_redis = pytest.mark.skipif(not REDIS_CACHE, reason="the hot reads need the Redis cache")

pytestmark = pytest.mark.django_db(transaction=True)

CSV = b"id,name,city\n" + b"".join(b'%d,name %d,"Paris, FR"\n' % (i, i) for i in range(1, 8))


class Counting:
    """Django's WSGI handler, counting the requests that reach it."""

    def __init__(self) -> None:
        self.django = WSGIHandler()
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        self.calls += 1
        return self.django(environ, start_response)


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body
        self.code = int(status.split()[0])

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def comparable(self) -> tuple[str, list[tuple[str, str]], bytes]:
        """Everything but the request id, which is new for every request."""
        headers = sorted((k, v) for k, v in self.headers if k.lower() != "x-request-id")
        return self.status, headers, self.body


def get(
    app: Callable[..., Iterable[bytes]],
    path: str,
    token: str | None,
    query: str = "",
    method: str = "GET",
    **headers: str,
) -> Answer:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        **{f"HTTP_{k.upper()}": v for k, v in headers.items()},
    }
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Token {token}"
    seen: list[Any] = []

    def start_response(status: str, response_headers: list[Any], exc: Any = None) -> Any:
        seen[:] = [status, response_headers]
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return Answer(seen[0], seen[1], body)


@pytest.fixture
def app() -> Any:
    django = Counting()
    hot = HotReads(django)
    hot.django = django  # type: ignore[attr-defined]
    return hot


@pytest.fixture
def completed(user: Any) -> str:
    return str(ingest(upload(client_for(user), CSV, "cities.csv")))


def paths(dataset_id: str) -> list[tuple[str, str]]:
    base = f"/api/datasets/{dataset_id}/"
    return [
        (base + "progress/", ""),
        (base, ""),
        ("/api/datasets/", ""),
        (base + "rows/", ""),
        (base + "rows/", "after=2&limit=3"),
        (base + "rows/", "limit=2&after=0"),
        (base + "rows/", "after=6"),
    ]


@needs_redis
def test_hot_answers_are_django_s_byte_for_byte(
    app: Any, user: Any, completed: str, settings: Any
) -> None:
    token = user.auth_token.key
    for path, query in paths(completed):
        first = get(app, path, token, query)  # a miss: Django answers and fills the cache
        assert first.code == 200, (path, query, first.body)
        calls = app.django.calls
        hot = get(app, path, token, query)
        assert app.django.calls == calls, f"{path}?{query} reached Django"
        settings.CSVAULT_HOT_READS = False
        reference = get(app, path, token, query)
        settings.CSVAULT_HOT_READS = True
        assert app.django.calls == calls + 1
        assert hot.comparable() == reference.comparable(), (path, query)
        assert hot.header("X-Request-ID") != reference.header("X-Request-ID")
    rows = get(app, f"/api/datasets/{completed}/rows/", token, "after=2&limit=3")
    body = rows.body.decode()
    assert '"values":["3","name 3","Paris, FR"]' in body
    assert f'"next":"http://testserver/api/datasets/{completed}/rows/?after=5&limit=3"' in body


def test_only_the_redis_cache_has_a_hot_path(app: Any, user: Any, completed: str) -> None:
    """In embedded mode (the file cache) every request is Django's; with Redis the
    second read of a cached answer is not."""
    path = f"/api/datasets/{completed}/progress/"
    token = user.auth_token.key
    assert get(app, path, token).code == 200
    calls = app.django.calls
    answer = get(app, path, token)
    assert answer.code == 200
    assert app.django.calls == calls + (0 if REDIS_CACHE else 1)


@needs_redis
def test_every_read_is_counted_once_whichever_path_answers(
    app: Any, user: Any, completed: str, settings: Any
) -> None:
    rates(settings, read="9/min")
    cache.delete(user_counter_key("read", user.pk))
    token = user.auth_token.key
    answers = [get(app, path, token, query) for path, query in paths(completed)]
    assert [a.code for a in answers] == [200] * 7  # each a miss, then Django counted it
    answers += [get(app, f"/api/datasets/{completed}/progress/", token) for _ in range(2)]
    assert [a.code for a in answers] == [200] * 9
    assert cache.get(user_counter_key("read", user.pk)) == 9
    calls = app.django.calls
    throttled = get(app, f"/api/datasets/{completed}/progress/", token)
    assert throttled.code == 429
    assert int(throttled.header("Retry-After") or 0) > 0
    assert app.django.calls == calls + 1  # Django answers the 429
    assert cache.get(user_counter_key("read", user.pk)) == 10


@needs_redis
def test_another_users_token_never_gets_the_cached_answer(
    app: Any, user: Any, other_user: Any, completed: str
) -> None:
    for path, query in paths(completed):
        assert get(app, path, user.auth_token.key, query).code == 200
        assert get(app, path, user.auth_token.key, query).code == 200
    for path, query in paths(completed):
        answer = get(app, path, other_user.auth_token.key, query)
        if path == "/api/datasets/":
            assert answer.code == 200
            assert b"cities.csv" not in answer.body
        else:
            assert answer.code == 404, (path, query)


@needs_redis
def test_a_revoked_token_is_refused_at_once(app: Any, user: Any, completed: str) -> None:
    path = f"/api/datasets/{completed}/"
    token = user.auth_token.key
    assert get(app, path, token).code == 200
    assert get(app, path, token).code == 200
    assert client_for(user).post("/api/auth/logout/").status_code == 204
    assert get(app, path, token).code == 401
    assert get(app, f"{path}rows/", token).code == 401


@needs_redis
def test_a_deactivated_user_is_refused_at_once(app: Any, user: Any, completed: str) -> None:
    path = f"/api/datasets/{completed}/progress/"
    token = user.auth_token.key
    assert get(app, path, token).code == 200
    assert get(app, path, token).code == 200
    user.is_active = False
    user.save()
    assert get(app, path, token).code == 401


@needs_redis
def test_the_next_hot_read_after_a_write_sees_it(app: Any, user: Any, completed: str) -> None:
    api = client_for(user)
    waiting = str(upload(api, CSV, "waiting.csv").json()["id"])
    token = user.auth_token.key
    progress = f"/api/datasets/{waiting}/progress/"
    for _ in range(2):
        assert get(app, progress, token).code == 200
    assert get(app, f"/api/datasets/{waiting}/rows/", token).code == 409
    assert api.post(f"/api/datasets/{waiting}/cancel/").status_code == 200
    assert b'"cancelled"' in get(app, progress, token).body
    rows = f"/api/datasets/{completed}/rows/"
    for _ in range(2):
        assert get(app, rows, token).code == 200
        assert get(app, "/api/datasets/", token).code == 200
    assert api.delete(f"/api/datasets/{completed}/").status_code == 204
    assert get(app, rows, token).code == 404
    assert get(app, f"/api/datasets/{completed}/", token).code == 404
    assert completed.encode() not in get(app, "/api/datasets/", token).body


@needs_redis
@pytest.mark.parametrize(
    ("method", "suffix", "query", "headers"),
    [
        ("GET", "progress/", "format=json", {}),
        ("GET", "", "", {"accept": "text/html"}),
        ("GET", "", "", {"accept": "application/json; indent=4"}),
        ("GET", "", "", {"cookie": "sessionid=x"}),
        ("HEAD", "progress/", "", {}),
        ("GET", "rows/", "limit=0", {}),
        ("GET", "rows/", "limit=1001", {}),
        ("GET", "rows/", "after=-1", {}),
        ("GET", "rows/", "after=1&after=2", {}),
        ("GET", "rows/", "page=2", {}),
        ("GET", "rows/", "after=1&", {}),
        ("GET", "progress/", "", {"host": "evil.example"}),
    ],
)
def test_what_the_hot_path_leaves_to_django(
    app: Any,
    user: Any,
    completed: str,
    settings: Any,
    method: str,
    suffix: str,
    query: str,
    headers: dict[str, str],
) -> None:
    path = f"/api/datasets/{completed}/{suffix}"
    token = user.auth_token.key
    for _ in range(2):  # warm the cache and the learned headers with plain requests
        assert get(app, path, token).code == 200
    calls = app.django.calls
    answer = get(app, path, token, query, method, **headers)
    assert app.django.calls == calls + 1
    settings.CSVAULT_HOT_READS = False
    reference = get(app, path, token, query, method, **headers)
    assert answer.code == reference.code
    assert answer.header("Content-Type") == reference.header("Content-Type")


@needs_redis
def test_hot_answers_are_logged_and_counted(
    app: Any, user: Any, completed: str, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    path = f"/api/datasets/{completed}/progress/"
    token = user.auth_token.key
    assert get(app, path, token).code == 200
    labels = {"status": "200", "view": "dataset-progress", "method": "GET"}
    metric = "django_http_responses_total_by_status_view_method_total"
    before = REGISTRY.get_sample_value(metric, labels) or 0.0
    calls = app.django.calls
    logging.getLogger("csvault.request").setLevel(logging.INFO)
    answer = get(app, path, token, **{"x_request_id": "poll-42"})
    assert app.django.calls == calls
    assert answer.header("X-Request-ID") == "poll-42"
    assert REGISTRY.get_sample_value(metric, labels) == before + 1
    [line] = [
        line
        for line in log_lines()
        if line["logger"] == "csvault.request" and line["request_id"] == "poll-42"
    ]
    assert line["message"] == f"GET {path} 200"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert (line["request_id"], line["user_id"], line["dataset_id"]) == (
        "poll-42",
        str(user.pk),
        completed,
    )


@needs_redis
def test_a_late_fill_of_an_older_generation_is_never_served(
    app: Any, user: Any, completed: str
) -> None:
    """A reader that read the database before a write and fills the cache after it
    leaves a value of the old generation behind: the hot path must not serve it."""
    from csvault.datasets.cache import cache_get, cache_set, dataset_changed

    path = f"/api/datasets/{completed}/progress/"
    token = user.auth_token.key
    for _ in range(2):
        assert get(app, path, token).code == 200
    value, generation = cache_get(user.pk, completed, "progress")
    assert value is not None
    dataset_changed(completed, user.pk)
    cache_set(user.pk, completed, "progress", {**value, "status": "stale-marker"}, generation)
    answer = get(app, path, token)
    assert answer.code == 200
    assert b"stale-marker" not in answer.body


@needs_redis
def test_an_expired_token_entry_is_checked_again_in_the_database(
    app: Any, user: Any, completed: str, django_user_model: Any
) -> None:
    """The cached user id lives CSVAULT_AUTH_CACHE_SECONDS: after that the hot path
    checks the token in the database itself, and a user deactivated behind the
    signals' back (a bulk update) is refused from then on."""
    from csvault.core.authentication import user_id_key

    path = f"/api/datasets/{completed}/progress/"
    token = user.auth_token.key
    for _ in range(2):
        assert get(app, path, token).code == 200
    cache.delete_many([user_id_key(token), f"csvault:auth:{sha256(token.encode()).hexdigest()}"])
    calls = app.django.calls
    assert get(app, path, token).code == 200
    assert app.django.calls == calls  # checked and answered before Django
    assert cache.get(user_id_key(token)) == user.pk
    django_user_model.objects.filter(pk=user.pk).update(is_active=False)
    cache.delete_many([user_id_key(token), f"csvault:auth:{sha256(token.encode()).hexdigest()}"])
    assert get(app, path, token).code == 401
    assert app.django.calls == calls + 1
