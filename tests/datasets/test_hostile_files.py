"""Hostile files through the upload API: each is refused clearly, never half-accepted.

Every case in the tables ends in one of three documented ways:

* a 4xx at upload with a JSON ``{"error": {"code", "message"}}`` and nothing stored;
* after the in-process scan + ingest, a final ``failed``/``rejected`` status whose error
  names the problem (and the row and column where there is one) and no stored rows;
* for the few inputs that csvault documents as acceptable (a header-only file, UTF-16
  with a byte order mark, a literal quote inside an unquoted value), ``completed`` with
  the exact values.

Never a 5xx; and after each case the service still answers ``/healthz`` and, under the
default limits again, ingests a normal file. The cases that need a real socket (streamed
bodies, lying or missing Content-Length) run against pytest-django's live server.
"""

from __future__ import annotations

import codecs
import gc
import io
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from csvault.datasets.models import Dataset, ProcessedData
from csvault.pipeline.ingest import dataset_ingest
from csvault.pipeline.scan import dataset_scan
from tests.helpers import ingest, read_all_rows, stored_names, upload

pytestmark = pytest.mark.django_db

URL = "/api/datasets/"


# --- expectations -------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """A 4xx at upload, with this error code; nothing is stored."""

    status: int
    code: str


@dataclass(frozen=True)
class Failed:
    """Uploaded (201), then a final failed/rejected status with this error code."""

    code: str
    status: str = "failed"
    row: int | None = None
    column: int | None = None
    # Words the message must contain (besides being a sentence at all).
    says: tuple[str, ...] = ()


@dataclass(frozen=True)
class Completed:
    """Documented as acceptable: completed with exactly these columns and rows."""

    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)


Expectation = Refused | Failed | Completed


@dataclass(frozen=True)
class Case:
    id: str
    content: bytes
    expect: Expectation
    filename: str = "data.csv"
    content_type: str = "text/csv"
    settings: dict[str, Any] = field(default_factory=dict)
    marks: tuple[Any, ...] = ()
    # Form fields sent with the file (an encoding given, say).
    fields: dict[str, str] = field(default_factory=dict)

    def param(self) -> Any:
        return pytest.param(self, id=self.id, marks=self.marks)


# Magic numbers alone (no NUL byte in them), then either binary-looking or CSV-looking
# bytes: the format must be recognised even when nothing else gives the file away.
MAGIC = {
    "png": b"\x89PNG\r\n\x1a\n",
    "elf": b"\x7fELF\x02\x01\x01",
    "zip": b"PK\x03\x04\x14",
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
}
BODIES = {"binary": b"\x00\x01\x02binary\x00" * 50, "texty": b"a,b,c\n1,2,3\n" * 20}
DECLARED = {
    "csv": ("data.csv", "text/csv"),
    "txt": ("report.txt", "text/plain"),
    "own-type": ("photo.png", "image/png"),
}


def utf16(text: str, codec: str, bom: bytes = b"") -> bytes:
    return bom + text.encode(codec)


BINARY_CASES = [
    Case(f"{kind}-{body}-as-{declared}", magic + BODIES[body], Refused(415, "not_csv"),
         filename=DECLARED[declared][0], content_type=DECLARED[declared][1])
    for kind, magic in MAGIC.items()
    for body in BODIES
    for declared in DECLARED
]  # fmt: skip

FILE_CASES = [
    Case("empty-file", b"", Refused(400, "empty_file")),
    # Documented: a header-only file completes with 0 rows (README, CSV rules).
    Case("header-only", b"a,b,c\n", Completed(["a", "b", "c"])),
    Case("header-only-no-newline", b"a,b,c", Completed(["a", "b", "c"])),
    Case("blank-lines-only", b"\n\r\n\n", Failed("empty_file", says=("empty",))),
    *BINARY_CASES,
    Case("nul-in-the-head", b"a,b\n1,\x002\n", Refused(415, "not_csv")),
    Case(
        "nul-after-the-sniffed-head",
        b"a,b\n" + b"1,2\n" * 3000 + b"3,\x00\n",
        Failed("nul_byte", row=3001, says=("NUL", "row 3001")),
    ),
    Case(
        "invalid-utf8",
        b"a,b\n1,2\n3,caf\xe9\n",
        Failed("invalid_utf8", row=2, says=("UTF-8", "row 2", "byte offset 13")),
        fields={"encoding": "utf-8"},
    ),
    # Not UTF-8 and no encoding given: detected as a single-byte encoding.
    Case(
        "latin1-detected",
        b"a,b\n1,2\n3,caf\xe9\n",
        Completed(["a", "b"], [["1", "2"], ["3", "café"]]),
    ),
    Case(
        "utf8-overlong-encoding",
        b"a,b\n1,\xc0\xaf\n",
        Failed("invalid_utf8", row=1, says=("UTF-8",)),
        fields={"encoding": "utf8"},
    ),
    Case(
        "undefined-byte-in-a-given-encoding",
        b"a,b\n1,2\n3,\x81\n",
        Failed("invalid_encoding", row=2, says=("byte offset 10", "row 2", "cp1252")),
        fields={"encoding": "windows-1252"},
    ),
    Case(
        "unknown-encoding",
        b"a,b\n1,2\n",
        Refused(400, "invalid_encoding"),
        fields={"encoding": "klingon"},
    ),
    Case(
        "multi-byte-encoding",
        b"a,b\n1,2\n",
        Refused(400, "invalid_encoding"),
        fields={"encoding": "shift_jis"},
    ),
    Case(
        "utf16-le-with-bom",
        utf16("a,b\n1,é\n2,東京\n", "utf-16-le", codecs.BOM_UTF16_LE),
        Completed(["a", "b"], [["1", "é"], ["2", "東京"]]),
    ),
    Case(
        "utf16-be-with-bom",
        utf16("a,b\n1,é\n", "utf-16-be", codecs.BOM_UTF16_BE),
        Completed(["a", "b"], [["1", "é"]]),
    ),
    Case(
        "utf16-le-without-bom",
        utf16("a,b\n1,é\n", "utf-16-le"),
        Completed(["a", "b"], [["1", "é"]]),
    ),
    Case(
        "utf16-be-without-bom",
        utf16("a,b\n1,é\n", "utf-16-be"),
        Completed(["a", "b"], [["1", "é"]]),
    ),
    Case(
        "utf32-le-with-bom",
        codecs.BOM_UTF32_LE + "a,b\n1,🎉\n".encode("utf-32-le"),
        Completed(["a", "b"], [["1", "🎉"]]),
    ),
    Case(
        "unterminated-quote",
        b'a,b\n1,2\n3,"never closed\n4,5\n',
        Failed("unterminated_quote", row=2, says=("never closed", "line 3")),
    ),
    Case(
        "text-after-a-closing-quote",
        b'a,b\n1,"b"c\n',
        Failed("bad_quote", row=1, says=("quote",)),
    ),
    Case(
        "stray-quote-in-unquoted-field",
        b'a,b\n1,b"c\n',
        Failed("stray_quote", row=1, column=2, says=("not quoted", "column 2", "row 1")),
    ),
    Case(
        "ragged-row-short",
        b"a,b,c\n1,2,3\n4,5\n",
        Failed("ragged_row", row=2, column=3, says=("Row 2", "2 fields", "expected 3")),
    ),
    Case(
        "ragged-row-long",
        b"a,b\n1,2,3\n",
        Failed("ragged_row", row=1, column=3, says=("Row 1", "3 fields")),
    ),
    # Tolerated with a warning (the detail's "warnings"): renamed, or dropped when empty.
    Case(
        "duplicate-header",
        b"id,name,id\n1,2,3\n",
        Completed(["id", "name", "id_2"], [["1", "2", "3"]]),
    ),
    Case("empty-trailing-header", b"id,x,,\n1,2,,\n", Completed(["id", "x"], [["1", "2"]])),
    Case("empty-header", b"id,,x\n1,2,3\n", Completed(["id", "column_2", "x"], [["1", "2", "3"]])),
    Case(
        "no-header-name",
        b" ,,\n1,2,3\n",
        Failed("empty_header", column=1, says=("no column names",)),
    ),
    Case(
        "value-under-an-empty-trailing-header",
        b"id, \n1,2\n",
        Failed("value_in_unnamed_column", row=1, column=2, says=("column 2", "no name")),
    ),
    Case(
        "field-over-the-limit",
        b"a,b\n1,2\n3," + b"x" * 101 + b"\n",
        Failed("field_too_large", row=2, says=("100 characters",)),
        settings={"CSVAULT_MAX_FIELD_BYTES": 100},
    ),
    Case(
        "quoted-field-over-the-limit",
        b'a,b\n1,"' + b"x\n" * 60 + b'"\n',
        Failed("field_too_large", row=1),
        settings={"CSVAULT_MAX_FIELD_BYTES": 100},
    ),
    Case(
        "too-many-columns",
        b",".join(b"c%d" % i for i in range(6)) + b"\n" + b"1," * 5 + b"1\n",
        Failed("too_many_columns", column=6, says=("6 columns", "at most 5")),
        settings={"CSVAULT_MAX_COLUMNS": 5},
    ),
    Case(
        "too-many-rows",
        b"a\n" + b"1\n" * 4,
        Failed("too_many_rows", row=4, says=("more than 3 rows",)),
        settings={"CSVAULT_MAX_ROWS": 3},
    ),
    Case(
        "over-the-size-limit",
        b"a,b\n" + b"1,2\n" * 400,
        Refused(413, "too_large"),
        settings={"CSVAULT_MAX_UPLOAD_BYTES": 1000},
    ),
    Case(
        "eicar-test-file",
        b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
        Failed("malware_found", status="rejected", says=("EICAR",)),
    ),
]


# --- helpers ------------------------------------------------------------------


def temp_files() -> set[Path]:
    return set(Path(django_settings.FILE_UPLOAD_TEMP_DIR).iterdir())


def post_file(
    client: APIClient, content: bytes, filename: str, content_type: str, **fields: str
) -> Any:
    return client.post(
        URL,
        {"file": SimpleUploadedFile(filename, content, content_type), **fields},
        format="multipart",
    )


def assert_json_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str)
    assert len(error["message"]) > 10
    if code is not None:
        assert error["code"] == code, error
    return error


def assert_nothing_stored(before_temp: set[Path], before_stored: set[str]) -> None:
    assert not Dataset.objects.exists()
    assert temp_files() == before_temp
    assert stored_names() == before_stored


# A normal file that breaks every limit the table lowers (6 columns, 4 rows, a 250-character
# field, over 1000 bytes): after a case, it goes through only under the default limits.
NORMAL_COLUMNS = [f"c{i}" for i in range(6)]
NORMAL_ROWS = [[str(n), "v" * 250, "a", "b", "c", "d"] for n in range(1, 5)]
NORMAL_FILE = "\n".join(",".join(row) for row in [NORMAL_COLUMNS, *NORMAL_ROWS]).encode()
assert len(NORMAL_FILE) > 1000


def assert_healthy(client: APIClient) -> None:
    """Liveness, and a normal file still goes all the way through."""
    assert APIClient().get("/healthz").status_code == 200
    dataset_id = ingest(upload(client, NORMAL_FILE))
    assert read_all_rows(client, dataset_id) == (
        NORMAL_COLUMNS,
        [{"row": n, "values": values} for n, values in enumerate(NORMAL_ROWS, start=1)],
    )


def check_final(client: APIClient, dataset_id: str, expect: Failed | Completed) -> None:
    body = client.get(f"{URL}{dataset_id}/").json()
    if isinstance(expect, Completed):
        assert body["status"] == "completed", body["error"]
        assert read_all_rows(client, dataset_id) == (
            expect.columns,
            [{"row": n, "values": v} for n, v in enumerate(expect.rows, start=1)],
        )
        return
    assert body["status"] == expect.status, body
    error = body["error"]
    assert error["code"] == expect.code, error
    assert len(error["message"]) > 10
    for words in expect.says:
        assert words in error["message"], error["message"]
    if expect.row is not None:
        assert error["row"] == expect.row, error
    if expect.column is not None:
        assert error["column"] == expect.column, error
    assert not ProcessedData.objects.filter(dataset_id=dataset_id).exists()
    assert client.get(f"{URL}{dataset_id}/rows/").status_code == 409


# --- the table ----------------------------------------------------------------


@pytest.mark.parametrize("case", [c.param() for c in FILE_CASES])
def test_a_hostile_file_is_refused_or_fails_clearly(api, settings, case: Case):
    defaults = {name: getattr(django_settings, name) for name in case.settings}
    for name, value in case.settings.items():
        setattr(settings, name, value)
    before_temp, before_stored = temp_files(), stored_names()
    response = post_file(api, case.content, case.filename, case.content_type, **case.fields)
    assert response.status_code < 500, response.content
    if isinstance(case.expect, Refused):
        assert_json_error(response, case.expect.status, case.expect.code)
        assert_nothing_stored(before_temp, before_stored)
    else:
        assert response.status_code == 201, response.content
        check_final(api, ingest(response), case.expect)
    for name, value in defaults.items():
        setattr(settings, name, value)
    assert_healthy(api)


# --- requests that are not one well-formed file -----------------------------


def test_two_files_in_one_request_are_refused(api):
    one, two = io.BytesIO(b"a\n1\n"), io.BytesIO(b"a\n2\n")
    one.name, two.name = "one.csv", "two.csv"
    before = temp_files(), stored_names()
    response = api.post(URL, {"file": [one, two]}, format="multipart")
    assert_json_error(response, 400, "one_file_expected")
    assert_nothing_stored(*before)
    assert_healthy(api)


def test_a_second_file_in_another_field_is_refused(api):
    one, two = io.BytesIO(b"a\n1\n"), io.BytesIO(b"a\n2\n")
    one.name, two.name = "one.csv", "two.csv"
    before = temp_files(), stored_names()
    response = api.post(URL, {"file": one, "attachment": two}, format="multipart")
    assert_json_error(response, 400, "one_file_expected")
    assert_nothing_stored(*before)
    assert_healthy(api)


def multipart(boundary: bytes, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += b"--" + boundary + b"\r\nContent-Disposition: " + disposition.encode()
        out += b"\r\nContent-Type: text/csv\r\n\r\n" + content + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


GOOD_BODY = multipart(b"BOUNDARY", [("file", "data.csv", b"a,b\n1,2\n3,4\n")])


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("multipart/form-data; boundary=OTHER", GOOD_BODY, id="wrong-boundary"),
        pytest.param("multipart/form-data", GOOD_BODY, id="no-boundary"),
        pytest.param("multipart/form-data; boundary=", GOOD_BODY, id="empty-boundary"),
        pytest.param("multipart/form-data; boundary=" + "B" * 80, GOOD_BODY, id="long-boundary"),
        pytest.param("multipart/form-data; boundary=\x01\x02", GOOD_BODY, id="control-boundary"),
        pytest.param("multipart/form-data; boundary=BOUNDARY", b"garbage", id="not-multipart"),
        pytest.param(
            "multipart/form-data; boundary=BOUNDARY",
            GOOD_BODY[: GOOD_BODY.index(b"3,4")],
            id="truncated-in-the-file",
        ),
        pytest.param(
            "multipart/form-data; boundary=BOUNDARY",
            GOOD_BODY[: GOOD_BODY.index(b"\r\n\r\n")],
            id="truncated-in-the-part-headers",
        ),
        pytest.param(
            "multipart/form-data; boundary=BOUNDARY",
            GOOD_BODY[: -len(b"--\r\n")],
            id="no-closing-boundary",
        ),
        pytest.param(
            "multipart/form-data; boundary=BOUNDARY",
            GOOD_BODY.replace(b"Content-Disposition", b"Content-Dispositio"),
            id="no-content-disposition",
        ),
    ],
)
def test_malformed_multipart_gets_a_json_4xx_and_stores_nothing(api, content_type, body):
    before = temp_files(), stored_names()
    response = api.generic("POST", URL, data=body, content_type=content_type)
    assert 400 <= response.status_code < 500, response.content
    assert_json_error(response, response.status_code)
    assert_nothing_stored(*before)
    assert_healthy(api)


# --- file names ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "shown"),
    [
        ("../../etc/passwd.csv", "passwd.csv"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("/abs/path.csv", "path.csv"),
        # Django's parser drops a file whose whole name is a path step: no file (400).
        ("..", None),
        ("../..", None),
        ("a\x00b.csv", "ab.csv"),
        ("bell\x07\x1b[31mred\x1b[0m.csv", "bell[31mred[0m.csv"),
        ("tab\tnew\nline\rcr.csv", "tabnewlinecr.csv"),
        ("evil\u202etxt.csv", "eviltxt.csv"),
        ("zero\u200bwidth\ufeff.csv", "zerowidth.csv"),
        ("x" * 300 + ".csv", "x" * 200),
        ("東京\u0301.csv", "東京\u0301.csv"),
    ],
)
def test_file_names_are_stored_under_uuids_and_shown_sanitised(api, filename, shown):
    response = api.generic(
        "POST",
        URL,
        data=multipart(b"BOUNDARY", [("file", filename, b"a\n1\n")]),
        content_type="multipart/form-data; boundary=BOUNDARY",
    )
    if shown is None:
        error = assert_json_error(response, 400, "invalid")
        assert "file" in error["fields"]
        assert not Dataset.objects.exists()
        return
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["filename"] == shown
    assert body["name"] == shown
    dataset = Dataset.objects.get(id=body["id"])
    assert dataset.storage_key == f"datasets/{uuid.UUID(body['id'])}.csvf"
    assert len(dataset.original_filename) <= 200
    check_final(api, ingest(response), Completed(["a"], [["1"]]))
    assert_healthy(api)


# --- streamed bodies against a live server ------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    #: Body bytes the client had sent when the response arrived.
    sent_when_answered: int
    sent_in_all: int

    def error(self) -> dict[str, Any]:
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return dict(json.loads(self.body)["error"])


def raw_post(
    live_server: Any,
    token: str,
    pieces: Iterator[bytes],
    *,
    content_length: int | None,
    boundary: str = "BOUNDARY",
) -> RawResponse:
    """POST a multipart body piece by piece on a raw socket, reading the answer meanwhile.

    ``content_length`` None sends ``Transfer-Encoding: chunked``; otherwise it is sent
    as ``Content-Length`` whether or not it is true. The answer is read while the body
    is still being written, so an early answer is seen even if the server then closes.
    """
    url = urlsplit(live_server.url)
    assert url.hostname is not None
    assert url.port is not None
    sock = socket.create_connection((url.hostname, url.port), timeout=60)
    framing = (
        "Transfer-Encoding: chunked\r\n"
        if content_length is None
        else f"Content-Length: {content_length}\r\n"
    )
    head = (
        f"POST {URL} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Token {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n{framing}"
        "Connection: close\r\n\r\n"
    ).encode()
    sent = [0]

    def send() -> None:
        try:
            sock.sendall(head)
            for piece in pieces:
                if content_length is None:
                    sock.sendall(b"%X\r\n%b\r\n" % (len(piece), piece))
                else:
                    sock.sendall(piece)
                sent[0] += len(piece)
            if content_length is None:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed before reading everything

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"connection closed without an answer: {data!r}"
        data += more
    answered = sent[0]
    header_block, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, value in (line.split(":", 1) for line in header_lines)
    }
    length = int(headers.get("content-length", -1))
    while length < 0 or len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    sock.close()
    sender.join(timeout=60)
    assert not sender.is_alive()
    return RawResponse(int(status_line.split()[1]), headers, body, answered, sent[0])


def file_body(
    size: int, piece: bytes, first: bytes = b"", boundary: str = "BOUNDARY"
) -> tuple[Iterator[bytes], int]:
    """A multipart body holding one file: ``first``, then ``size`` bytes of ``piece`` repeated.

    Generated as it is sent: the file never exists in memory as a whole.
    """
    opening = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="big.csv"\r\nContent-Type: text/csv\r\n\r\n'
    ).encode()
    closing = f"\r\n--{boundary}--\r\n".encode()

    def pieces() -> Iterator[bytes]:
        yield opening + first
        left = size
        while left > 0:
            chunk = piece if left >= len(piece) else piece[:left]
            left -= len(chunk)
            yield chunk
        yield closing

    return pieces(), len(opening) + len(first) + size + len(closing)


@pytest.mark.django_db(transaction=True)
def test_a_100_mb_single_line_fails_in_bounded_memory(live_server, api, user):
    size = 100 * 1024 * 1024
    # A header, then one 100 MB line with no line break and no delimiter.
    pieces, total = file_body(size, b"x" * (1024 * 1024), first=b"a,b\n")
    with PeakRss() as upload_memory:
        response = raw_post(live_server, user.auth_token.key, pieces, content_length=total)
    assert response.status == 201, response.body
    dataset_id = json.loads(response.body)["id"]
    assert dataset_scan(dataset_id=dataset_id, on_clean=None).status == "queued"
    with PeakRss() as ingest_memory:
        outcome = dataset_ingest(dataset_id=dataset_id)
    upload_peak, ingest_peak = upload_memory.rise, ingest_memory.rise
    print(
        f"100 MB line: upload peak RSS +{upload_peak / 2**20:.1f} MiB; "
        f"ingest peak RSS +{ingest_peak / 2**20:.1f} MiB"
    )
    assert outcome.status == "failed"
    error = api.get(f"{URL}{dataset_id}/").json()["error"]
    assert error["code"] == "line_too_long", error
    assert error["line"] == 2
    assert "Line 2" in error["message"]
    # The upload streams (a chunk or two in memory, never the file); the reader stops at
    # its line limit (16 Mi characters) instead of buffering the whole 100 MB line.
    assert upload_peak < 32 * 2**20
    assert ingest_peak < 80 * 2**20
    assert_healthy(api)


class PeakRss:
    """How far this process's peak RSS rises over a block, C allocations (the fast CSV
    parser's, OpenSSL's) included: the peak (VmHWM) is reset through
    /proc/self/clear_refs at the start and read back at the end."""

    rise = 0

    @staticmethod
    def _status_kib(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/self/status")

    def __enter__(self) -> PeakRss:
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")
        self.start = self._status_kib("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.rise = (self._status_kib("VmHWM") - self.start) * 1024


@pytest.fixture
def small_limit(settings: Any) -> int:
    settings.CSVAULT_MAX_UPLOAD_BYTES = 100_000
    return 100_000


BIG = 64 * 1024 * 1024  # far more than any socket buffer holds


@pytest.mark.django_db(transaction=True)
def test_an_honest_content_length_over_the_limit_is_refused_before_the_body_is_read(
    live_server, api, user, small_limit
):
    before = temp_files(), stored_names()
    pieces, total = file_body(BIG, b"1,2\n" * 16384)
    response = raw_post(live_server, user.auth_token.key, pieces, content_length=total)
    assert response.status == 413
    assert response.error()["code"] == "too_large"
    assert response.sent_when_answered < total
    assert_nothing_stored(*before)
    assert_healthy(api)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("claimed_over", [1000, 60_000])
def test_a_content_length_that_understates_the_body_still_gets_413(
    live_server, api, user, small_limit, claimed_over
):
    """Content-Length says "just under the limit plus framing"; the file goes on and on."""
    before = temp_files(), stored_names()
    pieces, _ = file_body(BIG, b"1,2\n" * 16384)
    response = raw_post(
        live_server, user.auth_token.key, pieces, content_length=small_limit + claimed_over
    )
    assert response.status == 413
    assert response.error()["code"] == "too_large"
    assert_nothing_stored(*before)
    assert_healthy(api)


@pytest.mark.django_db(transaction=True)
def test_a_content_length_far_below_the_body_is_a_truncated_body(live_server, api, user):
    before = temp_files(), stored_names()
    pieces, _ = file_body(BIG, b"1,2\n" * 16384)
    response = raw_post(live_server, user.auth_token.key, pieces, content_length=300)
    assert 400 <= response.status < 500
    assert response.error()["message"]
    assert_nothing_stored(*before)
    assert_healthy(api)


@pytest.mark.django_db(transaction=True)
def test_a_body_without_content_length_is_refused_unread(live_server, api, user, small_limit):
    """Chunked: Django reads no body without a Content-Length, so none is ever stored."""
    before = temp_files(), stored_names()
    pieces, total = file_body(BIG, b"1,2\n" * 16384)
    response = raw_post(live_server, user.auth_token.key, pieces, content_length=None)
    assert response.status == 411
    assert response.error()["code"] == "length_required"
    assert response.sent_when_answered < total
    assert_nothing_stored(*before)
    assert_healthy(api)


@pytest.mark.django_db(transaction=True)
def test_many_long_lines_are_ingested_in_bounded_memory(live_server, api, user):
    line = b"x" * (1024 * 1024 - 3) + b",1\n"  # one 1 MiB row, within every limit
    pieces, total = file_body(100 * len(line), line, first=b"a,b\n")
    response = raw_post(live_server, user.auth_token.key, pieces, content_length=total)
    assert response.status == 201, response.body
    dataset_id = json.loads(response.body)["id"]
    assert dataset_scan(dataset_id=dataset_id, on_clean=None).status == "queued"
    with PeakRss() as memory:
        outcome = dataset_ingest(dataset_id=dataset_id)
    peak = memory.rise
    assert outcome.status == "completed"
    print(f"100 rows of 1 MiB: ingest peak RSS +{peak / 2**20:.1f} MiB")
    assert peak < 64 * 2**20
