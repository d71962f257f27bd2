"""What an upload leaves in the store when things go wrong around it: a connection reset
mid-file leaves nothing; a broker outage after the dataset is saved keeps its file."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from csvault.datasets.models import Dataset
from tests.csvdata import to_csv, tricky_rows
from tests.datasets.test_hostile_files import file_body
from tests.helpers import broker_switched, free_port, stored_names, upload


def reset_mid_upload(live_server: Any, token: str, send_bytes: int) -> None:
    """POST a 64 MB file, send ``send_bytes`` of it, then reset the connection (RST)."""
    pieces, total = file_body(64 * 2**20, b"a,b\n" * 16384, first=b"a,b\n")
    url = urlsplit(live_server.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    sock.sendall(
        (
            f"POST /api/datasets/ HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Authorization: Token {token}\r\n"
            "Content-Type: multipart/form-data; boundary=BOUNDARY\r\n"
            f"Content-Length: {total}\r\nConnection: close\r\n\r\n"
        ).encode()
    )
    sent = 0
    for piece in pieces:
        sock.sendall(piece)
        sent += len(piece)
        if sent >= send_bytes:
            break
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.django_db(transaction=True)
def test_a_connection_reset_mid_file_leaves_nothing_in_the_store(live_server, user):
    before = stored_names()
    # Past one 8 MiB part: on S3 a multipart upload is under way when the reset comes.
    reset_mid_upload(live_server, user.auth_token.key, send_bytes=20 * 2**20)
    deadline = time.monotonic() + 30
    while stored_names() != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stored_names() == before
    assert not Dataset.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_after_the_save_keeps_the_dataset_and_its_file(api):
    with broker_switched(f"redis://127.0.0.1:{free_port()}/0"):
        response = upload(api, to_csv(tricky_rows(50)))
    # The dataset is saved; the scan task could not be sent, and the reaper re-sends it.
    assert response.status_code == 201, response.content
    dataset = Dataset.objects.get(id=response.json()["id"])
    assert dataset.status == "pending"
    assert dataset.storage_key in stored_names()
