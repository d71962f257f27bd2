"""The tus 1.0 server at /api/uploads/ over real HTTP (pytest-django's ``live_server``):
every header and status the protocol names, and the state each request leaves (the
Dataset row, the store, the stored rows once scanned and ingested)."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.utils import timezone

from csvault.datasets.models import Dataset
from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.purge import dataset_purge
from csvault.pipeline.scan import dataset_scan
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import stored_names, stored_rows, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

TUS = "1.0.0"
CHUNK_TYPE = "application/offset+octet-stream"
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
#: Odd chunk sizes around the 64 KiB segments the server seals.
ODD_CHUNKS = [1, 7, 65535, 65537, 100_000]
TIMEOUT = 60


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def metadata(
    filename: str = "data.csv",
    name: str = "tus upload",
    delimiter: str = ",",
    has_header: str = "true",
) -> str:
    return (
        f"filename {b64(filename)},name {b64(name)},"
        f"delimiter {b64(delimiter)},has_header {b64(has_header)}"
    )


def auth(user: Any, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Token {user.auth_token.key}", "Tus-Resumable": TUS, **extra}


def call(method: str, url: str, headers: dict[str, str], data: bytes | None = None) -> Any:
    """One request on a connection of its own (an error may leave a body unread)."""
    return requests.request(
        method, url, headers={"Connection": "close", **headers}, data=data, timeout=TIMEOUT
    )


def create(live_server: Any, user: Any, length: int, **extra: str) -> Any:
    headers = auth(user, **{"Upload-Length": str(length), "Upload-Metadata": metadata()})
    headers.update(extra)
    return call("POST", f"{live_server.url}/api/uploads/", headers)


def created(live_server: Any, user: Any, length: int) -> tuple[str, uuid.UUID]:
    answer = create(live_server, user, length)
    assert answer.status_code == 201, answer.text
    location = answer.headers["Location"]
    return location, uuid.UUID(location.rsplit("/", 1)[1])


def patch(url: str, user: Any, offset: int, body: bytes, **extra: str) -> Any:
    headers = auth(user, **{"Upload-Offset": str(offset), "Content-Type": CHUNK_TYPE})
    headers.update(extra)
    return call("PATCH", url, headers, body)


def head(url: str, user: Any) -> Any:
    return call("HEAD", url, auth(user))


def offset_of(url: str, user: Any) -> int:
    answer = head(url, user)
    assert answer.status_code == 200, answer.status_code
    return int(answer.headers["Upload-Offset"])


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname
    assert parts.port
    return parts.hostname, parts.port


def error_code(answer: Any) -> str:
    return str(answer.json()["error"]["code"])


def sha1_header(body: bytes) -> str:
    return "sha1 " + base64.b64encode(hashlib.sha1(body).digest()).decode()


def send_in_chunks(url: str, user: Any, data: bytes, sizes: list[int]) -> Any:
    """PATCH ``data`` in chunks of ``sizes`` then the rest; HEAD's offset is exact after
    each one but the last. Returns the last PATCH's answer."""
    offset = 0
    bounds = [*sizes, len(data) - sum(sizes)]
    assert bounds[-1] > 0
    for i, size in enumerate(bounds):
        answer = patch(url, user, offset, data[offset : offset + size])
        assert answer.status_code == 204, answer.text
        offset += size
        assert answer.headers["Upload-Offset"] == str(offset)
        assert answer.headers["Tus-Resumable"] == TUS
        if i < len(bounds) - 1:
            assert offset_of(url, user) == offset
    return answer


def scan_and_ingest(dataset_id: uuid.UUID) -> None:
    assert dataset_scan(dataset_id=dataset_id, on_clean=None).status == "queued"
    assert dataset_ingest(dataset_id=dataset_id).status == "completed"


def names_of(dataset_id: uuid.UUID) -> set[str]:
    return {name for name in stored_names() if str(dataset_id) in name}


# --- 1. OPTIONS ---------------------------------------------------------------------------


def test_options_describes_the_server_without_tus_resumable(live_server, user, settings):
    settings.CSVAULT_MAX_UPLOAD_BYTES = 123_456_789
    answer = call(
        "OPTIONS",
        f"{live_server.url}/api/uploads/",
        {"Authorization": f"Token {user.auth_token.key}"},  # no Tus-Resumable
    )
    assert answer.status_code == 204, answer.text
    assert answer.content == b""
    assert answer.headers["Tus-Version"] == TUS
    extensions = {e.strip() for e in answer.headers["Tus-Extension"].split(",")}
    assert {
        "creation",
        "creation-with-upload",
        "termination",
        "checksum",
        "expiration",
    } <= extensions
    assert answer.headers["Tus-Max-Size"] == "123456789"
    algorithms = {a.strip() for a in answer.headers["Tus-Checksum-Algorithm"].split(",")}
    assert "sha1" in algorithms


# --- 2. Tus-Resumable ---------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0"])
def test_a_missing_or_wrong_tus_resumable_is_412(live_server, user, version):
    url, dataset_id = created(live_server, user, 100)
    headers = auth(user)
    if version is None:
        del headers["Tus-Resumable"]
    else:
        headers["Tus-Resumable"] = version
    post = call(
        "POST",
        f"{live_server.url}/api/uploads/",
        {**headers, "Upload-Length": "100", "Upload-Metadata": metadata()},
    )
    head_answer = call("HEAD", url, headers)
    patch_answer = call(
        "PATCH",
        url,
        {**headers, "Upload-Offset": "0", "Content-Type": CHUNK_TYPE},
        b"a,b\r\n",
    )
    for answer in (post, head_answer, patch_answer):
        assert answer.status_code == 412, (answer.request.method, answer.text)
    assert error_code(post) == "tus_version"
    assert error_code(patch_answer) == "tus_version"
    # Nothing was created, nothing appended.
    assert Dataset.objects.filter(owner=user).count() == 1
    assert Dataset.objects.get(id=dataset_id).bytes_received == 0


def test_a_412_names_the_supported_versions(live_server, user):
    answer = call(
        "POST",
        f"{live_server.url}/api/uploads/",
        {**auth(user, **{"Upload-Length": "10"}), "Tus-Resumable": "0.2.2"},
    )
    assert answer.status_code == 412
    assert answer.headers.get("Tus-Version") == TUS


# --- 3. creation --------------------------------------------------------------------------


def test_post_creates_an_uploading_dataset(live_server, user, api):
    before = timezone.now()
    answer = create(live_server, user, 1234)
    assert answer.status_code == 201, answer.text
    location = answer.headers["Location"]
    match = re.fullmatch(rf"{re.escape(live_server.url)}/api/uploads/({UUID_RE})", location)
    assert match, location
    assert answer.headers["Tus-Resumable"] == TUS
    assert answer.headers["Upload-Offset"] == "0"
    expires = parsedate_to_datetime(answer.headers["Upload-Expires"])
    assert expires > before
    dataset = Dataset.objects.get(id=match[1])
    assert dataset.owner == user
    assert dataset.status == "uploading"
    assert dataset.bytes_received == 0
    assert dataset.size == 1234
    assert dataset.name == "tus upload"
    assert dataset.original_filename == "data.csv"
    assert dataset.delimiter == ","
    assert dataset.has_header is True
    shown = api.get(f"/api/datasets/{dataset.id}/")
    assert shown.status_code == 200
    assert shown.json()["status"] == "uploading"


# --- 4. creation refused ------------------------------------------------------------------


def test_upload_length_over_the_limit_is_413(live_server, user, settings):
    settings.CSVAULT_MAX_UPLOAD_BYTES = 1000
    answer = create(live_server, user, 1001)
    assert answer.status_code == 413, answer.text
    assert error_code(answer) == "too_large"
    assert answer.headers["Tus-Resumable"] == TUS
    assert not Dataset.objects.filter(owner=user).exists()


def test_upload_length_over_the_quota_is_refused(live_server, user, settings):
    settings.CSVAULT_QUOTA_BYTES = 5000
    assert create(live_server, user, 4000).status_code == 201
    answer = create(live_server, user, 1001)
    assert answer.status_code == 413, answer.text  # tus: a creation too large is 413
    assert error_code(answer) == "storage_quota_exceeded"
    assert answer.json()["error"]["quota_bytes"] == 5000
    assert answer.json()["error"]["stored_bytes"] == 4000
    assert answer.headers["Tus-Resumable"] == TUS
    assert Dataset.objects.filter(owner=user).count() == 1


def test_too_many_uploads_in_progress_is_429(live_server, user, settings):
    settings.CSVAULT_MAX_ACTIVE_DATASETS = 2
    assert create(live_server, user, 100).status_code == 201
    assert create(live_server, user, 100).status_code == 201
    answer = create(live_server, user, 100)
    assert answer.status_code == 429, answer.text
    assert error_code(answer) == "too_many_active_datasets"
    assert int(answer.headers["Retry-After"]) > 0
    assert Dataset.objects.filter(owner=user).count() == 2


def test_upload_length_zero_is_400_empty_file(live_server, user):
    answer = create(live_server, user, 0)
    assert answer.status_code == 400, answer.text
    assert error_code(answer) == "empty_file"
    assert not Dataset.objects.filter(owner=user).exists()


@pytest.mark.parametrize(
    ("upload_metadata", "code"),
    [
        (f"filename {b64('a.csv')},name !!notbase64!!", "tus_header"),
        ("filename " + base64.b64encode(b"\xff\xfe").decode(), "tus_header"),
        (f"filename {b64('a.csv')},delimiter {b64(';;')}", "invalid_delimiter"),
        (f"filename {b64('a.csv')},delimiter {b64(chr(10))}", "invalid_delimiter"),
        (f"filename {b64('a.csv')},has_header {b64('maybe')}", "invalid"),
    ],
    ids=["bad-base64", "not-utf8", "two-char-delimiter", "newline-delimiter", "bad-has-header"],
)
def test_bad_metadata_is_400(live_server, user, upload_metadata, code):
    answer = create(live_server, user, 100, **{"Upload-Metadata": upload_metadata})
    assert answer.status_code == 400, answer.text
    assert error_code(answer) == code
    assert not Dataset.objects.filter(owner=user).exists()


def test_a_bad_upload_length_is_400(live_server, user):
    for bad in ("-5", "abc", ""):
        answer = create(live_server, user, 1, **{"Upload-Length": bad})
        assert answer.status_code == 400, (bad, answer.text)
        assert error_code(answer) == "tus_header"
    assert not Dataset.objects.filter(owner=user).exists()


def test_a_non_ascii_digit_in_upload_length_or_offset_is_400(live_server, user):
    post = create(live_server, user, 1, **{"Upload-Length": "\u00b2"})
    url, dataset_id = created(live_server, user, 100)
    patched = patch(url, user, 0, b"a,b\r\n", **{"Upload-Offset": "\u00b9"})
    assert Dataset.objects.get(id=dataset_id).bytes_received == 0
    for answer in (post, patched):
        assert answer.status_code == 400, answer.text
        assert error_code(answer) == "tus_header"


# --- 5. HEAD ------------------------------------------------------------------------------


def test_head_reports_offset_length_and_no_store(live_server, user):
    url, dataset_id = created(live_server, user, 500)
    assert patch(url, user, 0, b"id,name\r\n").status_code == 204
    answer = head(url, user)
    assert answer.status_code == 200
    assert answer.content == b""
    assert answer.headers["Upload-Offset"] == "9"
    assert answer.headers["Upload-Length"] == "500"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Tus-Resumable"] == TUS
    expires = parsedate_to_datetime(answer.headers["Upload-Expires"])
    stored = Dataset.objects.select_related("resumable").get(id=dataset_id).resumable.expires_at
    assert abs((expires - stored).total_seconds()) < 1
    assert Dataset.objects.get(id=dataset_id).bytes_received == 9


# --- 6. PATCH refused ---------------------------------------------------------------------


def test_patch_at_the_wrong_offset_is_409(live_server, user):
    url, dataset_id = created(live_server, user, 100)
    assert patch(url, user, 0, b"a,b\r\n").status_code == 204
    for wrong in (0, 3, 6):
        answer = patch(url, user, wrong, b"1,2\r\n")
        assert answer.status_code == 409, answer.text
        assert error_code(answer) == "offset_mismatch"
        assert answer.headers["Tus-Resumable"] == TUS
    assert offset_of(url, user) == 5
    assert Dataset.objects.get(id=dataset_id).bytes_received == 5


def test_patch_without_the_chunk_content_type_is_415(live_server, user):
    url, dataset_id = created(live_server, user, 100)
    for content_type in (None, "text/csv", "application/octet-stream"):
        headers = auth(user, **{"Upload-Offset": "0"})
        if content_type:
            headers["Content-Type"] = content_type
        answer = call("PATCH", url, headers, b"a,b\r\n")
        assert answer.status_code == 415, (content_type, answer.text)
        assert error_code(answer) == "tus_content_type"
    assert offset_of(url, user) == 0
    assert Dataset.objects.get(id=dataset_id).bytes_received == 0


def test_patch_past_upload_length_is_400(live_server, user):
    url, dataset_id = created(live_server, user, 10)
    assert patch(url, user, 0, b"a,b\r\n").status_code == 204
    answer = patch(url, user, 5, b"1,2\r\n3")
    assert answer.status_code == 400, answer.text
    assert error_code(answer) == "past_upload_length"
    assert offset_of(url, user) == 5
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.status, dataset.bytes_received) == ("uploading", 5)


def test_patch_of_a_completed_upload(live_server, user):
    url, dataset_id = created(live_server, user, 5)
    empty = patch(url, user, 0, b"")  # an empty chunk is fine, and changes nothing
    assert empty.status_code == 204, empty.text
    assert empty.headers["Upload-Offset"] == "0"
    assert patch(url, user, 0, b"a,b\r\n").status_code == 204
    assert Dataset.objects.get(id=dataset_id).status == "pending"
    again = patch(url, user, 5, b"")  # a client repeating its last, empty, PATCH
    assert again.status_code == 204, again.text
    assert again.headers["Upload-Offset"] == "5"
    for offset, body in ((5, b"x"), (0, b"a")):
        answer = patch(url, user, offset, body)
        assert answer.status_code == 409, answer.text
        assert error_code(answer) == "offset_mismatch"
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.status, dataset.bytes_received) == ("pending", 5)


def test_two_patches_at_one_offset_append_once(live_server, user):
    """One request appends at a time: the second waits for the first's lease, then finds
    the offset moved (409)."""
    data = to_csv(tricky_rows(1000))
    url, dataset_id = created(live_server, user, len(data))
    parts = urlsplit(url)
    first = data[:20_000]
    request = (
        f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Token {user.auth_token.key}\r\nTus-Resumable: {TUS}\r\n"
        f"Upload-Offset: 0\r\nContent-Type: {CHUNK_TYPE}\r\n"
        f"Content-Length: {len(first)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(address(url), timeout=TIMEOUT) as sock:
        sock.sendall(request + first[:100])  # holds the lease, body not all sent
        wait_until(
            lambda: Dataset.objects.get(id=dataset_id).resumable.lease_token is not None,
            timeout=10,
            what="the first PATCH holds the lease",
        )
        with ThreadPoolExecutor(1) as pool:
            second = pool.submit(patch, url, user, 0, data[:30_000])
            time.sleep(0.5)
            assert not second.done()  # waiting for the lease
            sock.sendall(first[100:])
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 204"), reply[:200]
            assert b"Upload-Offset: 20000\r\n" in reply
            conflict = second.result(timeout=TIMEOUT)
    assert conflict.status_code == 409, conflict.text
    assert error_code(conflict) == "offset_mismatch"
    assert offset_of(url, user) == 20_000
    assert patch(url, user, 20_000, data[20_000:]).status_code == 204
    assert Dataset.objects.get(id=dataset_id).status == "pending"


# --- 7. odd chunks, then ingest -----------------------------------------------------------


def _odd_chunks_then_ingest(live_server: Any, user: Any, api: Any, rows_count: int) -> Any:
    rows = tricky_rows(rows_count)
    data = to_csv(rows)
    assert len(data) > sum(ODD_CHUNKS) + 1
    url, dataset_id = created(live_server, user, len(data))
    send_in_chunks(url, user, data, ODD_CHUNKS)
    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.status == "pending", dataset.error
    assert dataset.bytes_received == dataset.size == len(data)
    done = head(url, user)  # a complete upload: its offset is its length
    assert done.status_code == 200
    assert done.headers["Upload-Offset"] == done.headers["Upload-Length"] == str(len(data))
    assert "Upload-Expires" not in done.headers
    scan_and_ingest(dataset_id)
    assert [values for _, values in stored_rows(dataset_id)] == rows
    shown = api.get(f"/api/datasets/{dataset_id}/").json()
    assert shown["status"] == "completed"
    assert shown["row_count"] == len(rows)
    assert shown["sha256"] == hashlib.sha256(data).hexdigest()
    return dataset_id


def test_odd_sized_chunks_keep_exact_offsets_and_every_row(live_server, user, api):
    _odd_chunks_then_ingest(live_server, user, api, 4000)


# --- 8. checksum --------------------------------------------------------------------------


def test_checksum_right_wrong_and_unknown(live_server, user):
    url, dataset_id = created(live_server, user, 100)
    first, second = b"id,name\r\n", b"1,one\r\n"
    answer = patch(url, user, 0, first, **{"Upload-Checksum": sha1_header(first)})
    assert answer.status_code == 204, answer.text
    assert answer.headers["Upload-Offset"] == str(len(first))
    wrong = patch(url, user, len(first), second, **{"Upload-Checksum": sha1_header(b"other")})
    assert wrong.status_code == 460, wrong.text
    assert error_code(wrong) == "checksum_mismatch"
    assert offset_of(url, user) == len(first)
    unknown = patch(url, user, len(first), second, **{"Upload-Checksum": "crc32 " + b64("1234")})
    assert unknown.status_code == 400, unknown.text
    assert error_code(unknown) == "tus_checksum_algorithm"
    assert offset_of(url, user) == len(first)
    right = patch(url, user, len(first), second, **{"Upload-Checksum": sha1_header(second)})
    assert right.status_code == 204, right.text
    assert right.headers["Upload-Offset"] == str(len(first) + len(second))
    assert Dataset.objects.get(id=dataset_id).bytes_received == len(first) + len(second)


def test_a_wrong_checksum_across_segments_keeps_nothing_of_the_chunk(live_server, user, api):
    rows = tricky_rows(3000)
    data = to_csv(rows)
    url, dataset_id = created(live_server, user, len(data))
    assert patch(url, user, 0, data[:1000]).status_code == 204
    big = data[1000:150_000]  # seals two whole segments before the checksum is known
    wrong = patch(url, user, 1000, big, **{"Upload-Checksum": sha1_header(big + b"x")})
    assert wrong.status_code == 460, wrong.text
    assert offset_of(url, user) == 1000
    rest = data[1000:]
    answer = patch(url, user, 1000, rest, **{"Upload-Checksum": sha1_header(rest)})
    assert answer.status_code == 204, answer.text
    assert Dataset.objects.get(id=dataset_id).status == "pending"
    scan_and_ingest(dataset_id)
    assert [values for _, values in stored_rows(dataset_id)] == rows


# --- 9. creation-with-upload --------------------------------------------------------------


def test_creation_with_upload_takes_the_first_chunk(live_server, user):
    data = to_csv(tricky_rows(50))
    body = data[:777]
    answer = call(
        "POST",
        f"{live_server.url}/api/uploads/",
        auth(
            user,
            **{
                "Upload-Length": str(len(data)),
                "Upload-Metadata": metadata(),
                "Content-Type": CHUNK_TYPE,
            },
        ),
        body,
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["Upload-Offset"] == str(len(body))
    assert answer.headers["Tus-Resumable"] == TUS
    url = answer.headers["Location"]
    dataset_id = url.rsplit("/", 1)[1]
    assert Dataset.objects.get(id=dataset_id).bytes_received == len(body)
    assert offset_of(url, user) == len(body)
    assert patch(url, user, len(body), data[len(body) :]).status_code == 204
    assert Dataset.objects.get(id=dataset_id).status == "pending"


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({"Content-Type": "text/csv"}, 415),
        ({"Content-Type": CHUNK_TYPE, "Upload-Checksum": "crc32 AAAA"}, 400),
    ],
    ids=["wrong-content-type", "unknown-checksum"],
)
def test_a_refused_creation_with_upload_leaves_no_dataset(live_server, user, extra, status):
    answer = call(
        "POST",
        f"{live_server.url}/api/uploads/",
        auth(user, **{"Upload-Length": "100", "Upload-Metadata": metadata(), **extra}),
        b"a,b\r\n",
    )
    assert answer.status_code == status, answer.text
    assert "Location" not in answer.headers
    assert not Dataset.objects.filter(owner=user, deleted_at__isnull=True).exists()


# --- 10. termination ----------------------------------------------------------------------


def test_delete_terminates_and_purge_leaves_nothing(live_server, user, api):
    data = to_csv(tricky_rows(2000))
    url, dataset_id = created(live_server, user, len(data))
    assert patch(url, user, 0, data[:70_000]).status_code == 204
    assert names_of(dataset_id)  # the segment sealed so far is in the store
    answer = call("DELETE", url, auth(user))
    assert answer.status_code == 204, answer.text
    assert answer.headers["Tus-Resumable"] == TUS
    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.deleted_at is not None
    assert dataset.wrapped_key == b""
    assert head(url, user).status_code == 404
    gone = patch(url, user, 70_000, data[70_000:80_000])
    assert gone.status_code == 404, gone.text
    assert error_code(gone) == "not_found"
    assert call("DELETE", url, auth(user)).status_code == 404
    assert api.get(f"/api/datasets/{dataset_id}/").status_code == 404
    assert dataset_purge(dataset_id=dataset_id) is True
    assert names_of(dataset_id) == set()
    assert not Dataset.objects.filter(id=dataset_id).exists()


# --- 11. someone else's upload, and no one's ----------------------------------------------


def test_another_users_upload_is_404_and_untouched(live_server, user, other_user):
    url, dataset_id = created(live_server, user, 100)
    assert patch(url, user, 0, b"a,b\r\n").status_code == 204
    assert head(url, other_user).status_code == 404
    stolen = patch(url, other_user, 5, b"1,2\r\n")
    assert stolen.status_code == 404, stolen.text
    assert call("DELETE", url, auth(other_user)).status_code == 404
    override = call(
        "POST",
        url,
        auth(other_user, **{"X-HTTP-Method-Override": "DELETE"}),
    )
    assert override.status_code == 404
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.status, dataset.bytes_received, dataset.deleted_at) == ("uploading", 5, None)
    assert offset_of(url, user) == 5


def test_anonymous_requests_are_401(live_server, user):
    url, dataset_id = created(live_server, user, 100)
    tus = {"Tus-Resumable": TUS}
    answers = [
        call(
            "POST",
            f"{live_server.url}/api/uploads/",
            {**tus, "Upload-Length": "100", "Upload-Metadata": metadata()},
        ),
        call("HEAD", url, tus),
        call("PATCH", url, {**tus, "Upload-Offset": "0", "Content-Type": CHUNK_TYPE}, b"a,b\r\n"),
        call("DELETE", url, tus),
    ]
    for answer in answers:
        assert answer.status_code == 401, (answer.request.method, answer.status_code)
    assert Dataset.objects.count() == 1
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.status, dataset.bytes_received, dataset.deleted_at) == ("uploading", 0, None)


# --- 12. X-HTTP-Method-Override -----------------------------------------------------------


def test_method_override_patch_head_and_delete(live_server, user):
    url, dataset_id = created(live_server, user, 100)
    patched = call(
        "POST",
        url,
        auth(
            user,
            **{
                "X-HTTP-Method-Override": "PATCH",
                "Upload-Offset": "0",
                "Content-Type": CHUNK_TYPE,
            },
        ),
        b"a,b\r\n",
    )
    assert patched.status_code == 204, patched.text
    assert patched.headers["Upload-Offset"] == "5"
    assert Dataset.objects.get(id=dataset_id).bytes_received == 5
    headed = call("POST", url, auth(user, **{"X-HTTP-Method-Override": "HEAD"}))
    assert headed.status_code == 200, headed.text
    assert headed.headers["Upload-Offset"] == "5"
    assert headed.headers["Upload-Length"] == "100"
    assert headed.headers["Cache-Control"] == "no-store"
    deleted = call("POST", url, auth(user, **{"X-HTTP-Method-Override": "delete"}))
    assert deleted.status_code == 204, deleted.text
    assert Dataset.objects.get(id=dataset_id).deleted_at is not None
    assert head(url, user).status_code == 404


# --- 13. not a text file ------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.mark.parametrize(
    "content", [PNG, b"id,name\r\n1,\x00\x00\x00\r\n" * 20], ids=["png", "nul-bytes"]
)
def test_a_binary_file_is_refused_with_its_first_chunk(live_server, user, api, content):
    url, dataset_id = created(live_server, user, len(content) + 1000)
    answer = patch(url, user, 0, content)
    assert answer.status_code == 415, answer.text
    assert error_code(answer) == "not_csv"
    assert answer.headers["Tus-Resumable"] == TUS
    dataset = Dataset.objects.get(id=dataset_id)
    assert dataset.deleted_at is not None
    assert head(url, user).status_code == 404
    assert api.get(f"/api/datasets/{dataset_id}/").status_code == 404


def test_a_binary_file_sent_one_byte_first_is_refused_too(live_server, user):
    url, dataset_id = created(live_server, user, len(PNG))
    assert patch(url, user, 0, PNG[:1]).status_code == 204
    answer = patch(url, user, 1, PNG[1:])
    assert answer.status_code == 415, answer.text
    assert error_code(answer) == "not_csv"
    assert Dataset.objects.get(id=dataset_id).deleted_at is not None


# --- 14. a connection dropped mid-PATCH ---------------------------------------------------


def _dropped_patch(url: str, user: Any, offset: int, declared: int, body: bytes) -> None:
    """A PATCH announcing ``declared`` bytes that sends ``body`` and hangs up."""
    parts = urlsplit(url)
    request = (
        f"PATCH {parts.path} HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\n"
        f"Authorization: Token {user.auth_token.key}\r\n"
        f"Tus-Resumable: {TUS}\r\n"
        f"Upload-Offset: {offset}\r\n"
        f"Content-Type: {CHUNK_TYPE}\r\n"
        f"Content-Length: {declared}\r\n"
        "\r\n"
    ).encode()
    with socket.create_connection(address(url), timeout=TIMEOUT) as sock:
        sock.sendall(request + body)
        time.sleep(0.3)  # let the server read what was sent


def test_a_dropped_patch_keeps_what_arrived(live_server, user):
    rows = tricky_rows(4000)
    data = to_csv(rows)
    url, dataset_id = created(live_server, user, len(data))
    first = 10_000
    assert patch(url, user, 0, data[:first]).status_code == 204
    sent = 150_000  # past two segment boundaries, in the middle of a third segment
    _dropped_patch(url, user, first, len(data) - first, data[first : first + sent])
    wait_until(
        lambda: offset_of(url, user) > first, timeout=30, what="the dropped PATCH's bytes kept"
    )
    offset = offset_of(url, user)
    assert first < offset <= first + sent
    dataset = Dataset.objects.get(id=dataset_id)
    assert (dataset.status, dataset.bytes_received) == ("uploading", offset)
    answer = patch(url, user, offset, data[offset:])  # waits for the lease if still held
    assert answer.status_code == 204, answer.text
    assert answer.headers["Upload-Offset"] == str(len(data))
    assert Dataset.objects.get(id=dataset_id).status == "pending"
    scan_and_ingest(dataset_id)
    assert [values for _, values in stored_rows(dataset_id)] == rows


# --- 15. the same on S3 -------------------------------------------------------------------


def test_odd_chunks_on_s3_stage_then_leave_only_the_object(live_server, user, api, s3):
    rows = tricky_rows(4000)
    data = to_csv(rows)
    url, dataset_id = created(live_server, user, len(data))
    key = f"datasets/{dataset_id}.csvf"
    assert stored_names() == {f"{key}.staged"}  # the stream header, short of a part
    offset = 0
    for size in ODD_CHUNKS:
        assert patch(url, user, offset, data[offset : offset + size]).status_code == 204
        offset += size
        assert offset_of(url, user) == offset
        assert stored_names() == {f"{key}.staged"}
    assert patch(url, user, offset, data[offset:]).status_code == 204
    assert Dataset.objects.get(id=dataset_id).status == "pending"
    assert stored_names() == {key}
    scan_and_ingest(dataset_id)
    assert [values for _, values in stored_rows(dataset_id)] == rows
    assert api.get(f"/api/datasets/{dataset_id}/").json()["status"] == "completed"
    assert stored_names() == {key}


def test_a_file_past_one_part_on_s3_goes_multipart(live_server, user, s3):
    rows = tricky_rows(150_000)
    data = to_csv(rows)
    assert len(data) > (8 << 20) + 1_000_000
    url, dataset_id = created(live_server, user, len(data))
    key = f"datasets/{dataset_id}.csvf"
    sizes = [*ODD_CHUNKS, 5_000_000, 4_000_000]
    offset = 0
    for size in sizes:
        assert patch(url, user, offset, data[offset : offset + size]).status_code == 204
        offset += size
        assert offset_of(url, user) == offset
    assert stored_names() == {f"{key}.staged", f"{key} (unfinished upload)"}
    assert patch(url, user, offset, data[offset:]).status_code == 204
    assert Dataset.objects.get(id=dataset_id).status == "pending"
    assert stored_names() == {key}
    scan_and_ingest(dataset_id)
    assert [values for _, values in stored_rows(dataset_id)] == rows


def test_a_checksum_mismatch_on_s3_leaves_no_multipart_upload_behind(live_server, user, s3):
    data = to_csv(tricky_rows(150_000))
    assert len(data) > (8 << 20) + 1_000_000
    url, dataset_id = created(live_server, user, len(data))
    key = f"datasets/{dataset_id}.csvf"
    first = 5_000_000
    assert patch(url, user, 0, data[:first]).status_code == 204
    rest = data[first:]  # fills part 1 (8 MiB) on the way, then fails its checksum
    wrong = patch(url, user, first, rest, **{"Upload-Checksum": sha1_header(b"")})
    assert wrong.status_code == 460, wrong.text
    assert offset_of(url, user) == first
    right = patch(url, user, first, rest, **{"Upload-Checksum": sha1_header(rest)})
    assert right.status_code == 204, right.text
    assert Dataset.objects.get(id=dataset_id).status == "pending"
    assert stored_names() == {key}
