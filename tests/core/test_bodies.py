"""Hostile request bodies on every route that takes a POST: never a 5xx, never spooled.

A body that is too large, declares a broken length or boundary, or goes to an upload
route without credentials is refused before a byte of it is read; a file sent to a form
route is refused once the form (at most ``CSVAULT_FORM_MAX_BYTES``) is parsed, and
nothing of it is stored. The body is fed to Django through a stream that counts what is
read from it and, at each read, looks at the dataset store and the upload temp
directory. The anonymous client carries a made-up CSRF cookie, which is what makes
Django's CSRF check parse a POST body before any view runs.
"""

from __future__ import annotations

import io
import json
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from csvault.datasets.models import Dataset
from tests.helpers import stored_names

pytestmark = pytest.mark.django_db

FORM_MAX = 64 * 1024  # CSVAULT_FORM_MAX_BYTES's default
TWO_GIB = str(2**31)
MADE_UP_CSRF = "x" * 32
BOUNDARY = "csvault-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
FORM = "application/x-www-form-urlencoded"
CHUNK = "application/offset+octet-stream"


def spooled() -> set[str]:
    """What the upload path has written: dataset store files (``.part-*`` included)
    and the upload temp directory."""
    temp = {f"tmp/{p.name}" for p in Path(django_settings.FILE_UPLOAD_TEMP_DIR).iterdir()}
    return stored_names() | temp


class Body(io.RawIOBase):
    """A request body as the server reads it: counts the bytes taken and notes what
    appeared in the spool while it was being read. Past its content it reads as a closed
    connection."""

    def __init__(self, content: bytes) -> None:
        self._content = io.BytesIO(content)
        self.read_bytes = 0
        self._before = spooled()
        self.spooled: set[str] = set()

    def readable(self) -> bool:
        return True

    def _took(self, data: bytes) -> bytes:
        self.read_bytes += len(data)
        self.spooled |= spooled() - self._before
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._took(self._content.read(-1 if size is None else size))

    def readline(self, size: int | None = -1) -> bytes:
        return self._took(self._content.readline(-1 if size is None else size))


def multipart(field: str = "file", size: int = 100, boundary: str = BOUNDARY) -> bytes:
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name={json.dumps(field)}; "
        f'filename="a.csv"\r\nContent-Type: text/csv\r\n\r\n'
    )
    return head.encode() + b"a,b\n" * (size // 4) + f"\r\n--{boundary}--\r\n".encode()


def send(
    client: Client,
    method: str,
    url: str,
    content: bytes,
    content_type: str,
    declared: str | None = None,
    **headers: str,
) -> tuple[Any, Body]:
    body = Body(content)
    environ: dict[str, Any] = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    environ["CONTENT_TYPE"] = content_type
    environ["CONTENT_LENGTH"] = str(len(content)) if declared is None else declared
    environ["wsgi.input"] = body
    response = client.generic(method, url, b"", **environ)
    return response, body


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert len(error["message"]) > 10


@pytest.fixture
def anonymous() -> Client:
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.cookies["csrftoken"] = MADE_UP_CSRF
    return client


# --- anonymous: every route that takes a POST, every hostile body -----------------------

NOT_AUTHENTICATED = (401, "not_authenticated")
TOO_LARGE = (413, "too_large")
NOT_MULTIPART = (415, "unsupported_media_type")
BAD_LENGTH = (400, "invalid_content_length")
BAD_MULTIPART = (400, "invalid_multipart")
NO_FILE = (400, "file_not_accepted")

FORM_ROUTES = [
    ("POST", "/login/"),
    ("POST", "/admin/login/"),
    ("POST", "/logout/"),
    ("POST", "/api/auth/token/"),
]
UPLOAD_ROUTE = ("POST", "/api/datasets/")
TUS_ROUTES = [("POST", "/api/uploads/"), ("PATCH", f"/api/uploads/{uuid.uuid4()}")]


@dataclass(frozen=True)
class Case:
    name: str
    content: bytes
    content_type: str
    declared: str | None
    # The answer on a form route, on the multipart upload, on the tus routes.
    form: tuple[int, str]
    upload: tuple[int, str]
    tus: tuple[int, str]
    # A form route reads this body (within CSVAULT_FORM_MAX_BYTES) to find it wrong.
    form_reads: bool = False


CASES = [
    Case("declared 2 GiB, multipart", multipart(), MULTIPART, TWO_GIB,
         form=TOO_LARGE, upload=NOT_AUTHENTICATED, tus=NOT_MULTIPART),
    Case("declared 2 GiB, form", b"username=a&password=b", FORM, TWO_GIB,
         form=TOO_LARGE, upload=NOT_AUTHENTICATED, tus=NOT_AUTHENTICATED),
    Case("60 MB declared, a file in the field 'file'", multipart(size=3 << 20), MULTIPART,
         str(60_000_000), form=TOO_LARGE, upload=NOT_AUTHENTICATED, tus=NOT_MULTIPART),
    Case("oversized form", b"username=" + b"a" * FORM_MAX, FORM, None,
         form=TOO_LARGE, upload=NOT_AUTHENTICATED, tus=NOT_AUTHENTICATED),
    Case("oversized JSON", json.dumps({"username": "a" * FORM_MAX}).encode(),
         "application/json", None, form=TOO_LARGE, upload=NOT_AUTHENTICATED,
         tus=NOT_AUTHENTICATED),
    Case("oversized multipart, a file in the field 'file'", multipart(size=FORM_MAX),
         MULTIPART, None, form=TOO_LARGE, upload=NOT_AUTHENTICATED, tus=NOT_MULTIPART),
    Case("small multipart, a file in the field 'file'", multipart(), MULTIPART, None,
         form=NO_FILE, upload=NOT_AUTHENTICATED, tus=NOT_MULTIPART, form_reads=True),
    Case("small multipart, a file in another field", multipart(field="data"), MULTIPART, None,
         form=NO_FILE, upload=NOT_AUTHENTICATED, tus=NOT_MULTIPART, form_reads=True),
    Case("malformed multipart boundary", multipart(), "multipart/form-data; boundary=a\x01b",
         None, form=BAD_MULTIPART, upload=BAD_MULTIPART, tus=BAD_MULTIPART),
    Case("multipart without a boundary", multipart(), "multipart/form-data", None,
         form=BAD_MULTIPART, upload=BAD_MULTIPART, tus=BAD_MULTIPART),
    Case("negative Content-Length", b"username=a", FORM, "-1",
         form=BAD_LENGTH, upload=BAD_LENGTH, tus=BAD_LENGTH),
    Case("garbage Content-Length", b"username=a", FORM, "12abc",
         form=BAD_LENGTH, upload=BAD_LENGTH, tus=BAD_LENGTH),
    Case("a tus chunk", b"a,b\n" * 100, CHUNK, None,
         form=(0, "not refused"), upload=NOT_AUTHENTICATED, tus=NOT_AUTHENTICATED),
]  # fmt: skip

TABLE = [
    *((case, route, case.form, case.form_reads) for case in CASES for route in FORM_ROUTES),
    *((case, UPLOAD_ROUTE, case.upload, False) for case in CASES),
    *((case, route, case.tus, False) for case in CASES for route in TUS_ROUTES),
]
TABLE = [row for row in TABLE if row[2][0]]


@pytest.mark.parametrize(
    ("case", "route", "answer", "reads"),
    TABLE,
    ids=[f"{route[0]} {route[1][:14]}: {case.name}" for case, route, *_ in TABLE],
)
def test_an_anonymous_hostile_body_is_refused_and_never_spooled(
    anonymous: Client, case: Case, route: tuple[str, str], answer: tuple[int, str], reads: bool
) -> None:
    before = spooled()
    response, body = send(anonymous, *route, case.content, case.content_type, case.declared)
    assert_error(response, *answer)
    assert body.read_bytes <= (FORM_MAX if reads else 0)
    assert body.spooled == set()
    assert spooled() == before
    assert not Dataset.objects.exists()


@pytest.mark.parametrize("url", ["/login/", "/api/auth/token/"])
def test_a_refusal_carries_the_headers_of_every_answer(anonymous: Client, url: str) -> None:
    response, _ = send(anonymous, "POST", url, b"x", FORM, TWO_GIB)
    assert_error(response, *TOO_LARGE)
    assert response["X-Request-ID"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in response
    if url.startswith("/api/"):
        assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("method", "url"), [UPLOAD_ROUTE, *TUS_ROUTES])
def test_an_upload_with_a_wrong_token_is_refused_unread(method: str, url: str) -> None:
    response, body = send(
        Client(),
        method,
        url,
        b"a,b\n" * 1000,
        CHUNK if "uploads" in url else MULTIPART,
        TWO_GIB,
        Authorization="Token not-a-real-token",
    )
    assert_error(response, *NOT_AUTHENTICATED)
    assert body.read_bytes == 0


def test_a_form_body_up_to_the_limit_is_read_and_one_byte_more_is_not(user: Any) -> None:
    client = Client()
    credentials = {"username": "alice", "password": "pw-alice"}
    bare = len(json.dumps({**credentials, "pad": ""}).encode())
    at_limit = json.dumps({**credentials, "pad": "p" * (FORM_MAX - bare)}).encode()
    assert len(at_limit) == FORM_MAX
    response, body = send(client, "POST", "/api/auth/token/", at_limit, "application/json")
    assert response.status_code == 200, response.content
    assert body.read_bytes == FORM_MAX

    over = at_limit[:-1] + b" }"
    response, body = send(client, "POST", "/api/auth/token/", over, "application/json")
    assert_error(response, *TOO_LARGE)
    assert response.json()["error"]["limit"] == FORM_MAX
    assert body.read_bytes == 0


def test_the_form_limit_is_a_setting(anonymous: Client, settings: Any) -> None:
    settings.CSVAULT_FORM_MAX_BYTES = 10
    response, body = send(anonymous, "POST", "/login/", b"username=alice", FORM)
    assert_error(response, *TOO_LARGE)
    assert response.json()["error"]["limit"] == 10
    assert body.read_bytes == 0


@pytest.mark.parametrize("url", ["/login/", "/admin/login/", "/logout/", "/api/auth/token/"])
def test_too_many_form_fields_are_a_400_not_a_500(anonymous: Client, url: str) -> None:
    # Django's own guard (DATA_UPLOAD_MAX_NUMBER_FIELDS, 1000) within the size limit.
    content = b"&".join(b"f%d=" % n for n in range(1001))
    response, _ = send(anonymous, "POST", url, content, FORM)
    assert response.status_code == 400, response.content[:300]


# --- authenticated uploads: their own limits, still before reading ----------------------


def token_headers(user: Any) -> dict[str, str]:
    return {"Authorization": f"Token {user.auth_token.key}"}


@pytest.mark.parametrize(
    ("content", "content_type", "declared", "answer", "reads"),
    [
        (multipart(), MULTIPART, TWO_GIB, TOO_LARGE, False),
        (multipart(size=2000), MULTIPART, None, TOO_LARGE, True),
        (multipart(field="data"), MULTIPART, None, (400, "one_file_expected"), True),
        (multipart(), "multipart/form-data; boundary=", None, BAD_MULTIPART, False),
        (b"a,b\n", MULTIPART, "-1", BAD_LENGTH, False),
        (b"a,b\n", MULTIPART, "12abc", BAD_LENGTH, False),
        (b"{}", "application/json", None, NOT_MULTIPART, False),
    ],
    ids=["declared 2 GiB", "over the upload limit", "file in another field",
         "malformed boundary", "negative length", "garbage length", "JSON"],
)  # fmt: skip
def test_a_hostile_upload_by_a_user_is_refused_and_nothing_stays(
    user: Any,
    settings: Any,
    content: bytes,
    content_type: str,
    declared: str | None,
    answer: tuple[int, str],
    reads: bool,
) -> None:
    settings.CSVAULT_MAX_UPLOAD_BYTES = 1000
    before = spooled()
    response, body = send(
        Client(raise_request_exception=False),
        "POST",
        "/api/datasets/",
        content,
        content_type,
        declared,
        **token_headers(user),
    )
    assert_error(response, *answer)
    assert (body.read_bytes > 0) == reads
    assert spooled() == before
    assert not Dataset.objects.exists()


def test_a_huge_form_field_beside_the_file_is_a_400_not_a_500(user: Any) -> None:
    # Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) bounds the fields that are not files.
    name = b"n" * (3 << 20)
    content = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\n'.encode()
        + name
        + b"\r\n"
        + multipart()
    )
    before = spooled()
    response, _ = send(
        Client(raise_request_exception=False),
        "POST",
        "/api/datasets/",
        content,
        MULTIPART,
        **token_headers(user),
    )
    assert response.status_code == 400, response.content[:300]
    assert spooled() == before
    assert not Dataset.objects.exists()


def test_a_session_upload_over_the_limit_is_refused_before_its_body_is_read(
    user: Any, settings: Any
) -> None:
    settings.CSVAULT_MAX_UPLOAD_BYTES = 1000
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.force_login(user)
    token = client.get("/").cookies["csrftoken"].value
    response, body = send(
        client, "POST", "/api/datasets/", multipart(), MULTIPART, TWO_GIB, X_CSRFToken=token
    )
    assert_error(response, *TOO_LARGE)
    assert body.read_bytes == 0


def test_a_tus_chunk_is_never_multipart(user: Any) -> None:
    response, body = send(
        Client(raise_request_exception=False),
        "POST",
        "/api/uploads/",
        multipart(),
        MULTIPART,
        **token_headers(user),
        **{"Tus-Resumable": "1.0.0", "Upload-Length": "10"},
    )
    assert_error(response, *NOT_MULTIPART)
    assert body.read_bytes == 0
    assert not Dataset.objects.exists()


# --- a real server: the answer comes before the body is sent ------------------------------


def _answer_before_the_body(live_server: Any, head: bytes, sent: bytes) -> tuple[int, Any]:
    """Send the request head and part of the body; return the status and the JSON error
    received while the rest of the body was never sent (fails after 10 s without one)."""
    host, port = live_server.url.split("//", 1)[1].split(":")
    before = spooled()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + sent)
        received = b""
        deadline = time.monotonic() + 10
        # Until the JSON body (the last thing sent) is in, look at the store between reads.
        while not received.endswith(b"}"):
            assert spooled() == before, "the body was spooled while the client sent it"
            if time.monotonic() > deadline:
                pytest.fail("no answer while the declared body was not sent", pytrace=False)
            sock.settimeout(0.2)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            received += data
        assert spooled() == before
    status_line, _, rest = received.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/login/", "/admin/login/", "/logout/"])
def test_a_real_server_refuses_a_60_mb_anonymous_multipart_before_it_arrives(
    live_server: Any, path: str
) -> None:
    content = multipart(size=3 << 20)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {MULTIPART}\r\n"
        f"Content-Length: 60000000\r\nCookie: csrftoken={MADE_UP_CSRF}\r\n\r\n"
    ).encode()
    status, answer = _answer_before_the_body(live_server, head, content[: 3 << 20])
    assert (status, answer["error"]["code"]) == TOO_LARGE


@pytest.mark.django_db(transaction=True)
def test_a_real_server_refuses_a_declared_2_gib_form_at_once(live_server: Any) -> None:
    head = (
        f"POST /admin/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: {FORM}\r\n"
        f"Content-Length: {TWO_GIB}\r\nCookie: csrftoken={MADE_UP_CSRF}\r\n\r\n"
    ).encode()
    status, answer = _answer_before_the_body(live_server, head, b"username=a&password=b")
    assert (status, answer["error"]["code"]) == TOO_LARGE
