"""Slow clients against the real web server (gunicorn with scripts/gunicorn.conf.py, as
``make web`` runs it): they cannot take the web tier away, bodies slower than the minimum
rate are cut with 408, and bodies at a normal pace are not."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import web_process

pytestmark = pytest.mark.django_db(transaction=True)

GRACE = 1.0
RATE = 65536  # bytes/s: a 64 KiB piece is due one second after the grace period


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    env = {"CSVAULT_BODY_GRACE_SECONDS": str(GRACE), "CSVAULT_MIN_BODY_RATE": str(RATE)}
    with web_process(env, tmp_path / "web.log") as url:
        yield url


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _open(url: str, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", _port(url)), timeout=30)
    sock.sendall(head.replace("\n", "\r\n").encode())
    return sock


def _answer(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """The bytes the server sends within ``timeout`` and whether it closed the connection."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except TimeoutError:
        pass
    return data, False


def _upload_head(user: Any, length: int) -> str:
    return (
        "POST /api/datasets/ HTTP/1.1\nHost: 127.0.0.1\n"
        f"Authorization: Token {user.auth_token.key}\n"
        "Content-Type: multipart/form-data; boundary=b0undary\n"
        f"Content-Length: {length}\n\n"
    )


def _multipart(content: bytes) -> bytes:
    return (
        b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="d.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\n" + content + b"\r\n--b0undary--\r\n"
    )


def test_fifty_connections_trickling_bodies_leave_the_health_check_answering(
    web: str, user: Any
) -> None:
    """A made-up CSRF cookie makes the login form's check read the body; uploads read theirs."""
    login = (
        "POST /login/ HTTP/1.1\nHost: 127.0.0.1\nCookie: csrftoken=" + "a" * 32 + "\n"
        "Content-Type: application/x-www-form-urlencoded\nContent-Length: 10000000\n\n"
    )
    socks = [_open(web, login if n % 2 else _upload_head(user, 10_000_000)) for n in range(50)]
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(b"a")
            stop.wait(1)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        time.sleep(1.5)  # every connection has sent its headers and some body
        for _ in range(3):
            with urllib.request.urlopen(f"{web}/healthz", timeout=2) as response:
                assert response.status == 200
    finally:
        stop.set()
        thread.join()
        for sock in socks:
            sock.close()


def test_a_stalled_upload_is_cut_with_408_and_the_connection_closed(web: str, user: Any) -> None:
    sock = _open(web, _upload_head(user, 100_000))
    started = time.monotonic()
    sock.sendall(b"--b0undary\r\n")  # then nothing more
    answer, closed = _answer(sock, 20)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"code": "body_too_slow"' in answer
    # Cut once the first 64 KiB were due: after the grace period and a second more.
    assert time.monotonic() - started >= GRACE
    assert closed
    sock.close()


def test_an_upload_trickling_below_the_minimum_rate_is_cut(
    web: str, user: Any, tmp_path: Path
) -> None:
    """100 bytes a second: the server cuts it (408, then closes; the client, still
    sending, may see the close as a reset before it reads the answer)."""
    sock = _open(web, _upload_head(user, 100_000))
    started = time.monotonic()
    ended = False
    while not ended and time.monotonic() - started < 20:
        try:
            sock.send(b"x" * 100)
            answer, ended = _answer(sock, 1)
            ended = ended or answer.startswith(b"HTTP/1.1 408 ")
        except (ConnectionResetError, BrokenPipeError):
            ended = True
    assert ended
    assert "request body cut" in (tmp_path / "web.log").read_text()
    sock.close()


def test_a_body_shorter_than_its_content_length_is_cut_with_408(web: str, user: Any) -> None:
    body = _multipart(b"a,b\n1,2\n")
    sock = _open(web, _upload_head(user, len(body) + 1000))
    sock.sendall(body)  # then nothing: the declared length never arrives
    answer, _ = _answer(sock, 15)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    sock.close()


def test_a_fast_upload_is_not_cut_and_the_connection_stays_usable(web: str, user: Any) -> None:
    content = b"a,b\n" + b"1,2\n" * 200_000  # 800 KB
    body = _multipart(content)
    sock = _open(web, _upload_head(user, len(body)))
    sock.sendall(body)
    answer, closed = _answer(sock, 3)
    assert answer.startswith(b"HTTP/1.1 201 "), answer[:300]
    assert not closed  # keep-alive: the whole body was read
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    again, _ = _answer(sock, 3)
    assert again.startswith(b"HTTP/1.1 200 ")
    sock.close()
