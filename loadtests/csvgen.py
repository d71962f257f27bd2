"""Small unique CSV files and multipart bodies (shared by the locustfile and the seed)."""

from __future__ import annotations

import random
import uuid


def small_csv(rows: int) -> bytes:
    """A small CSV, unique per call (no two uploads share a SHA-256)."""
    tag = uuid.uuid4().hex
    lines = ["id,name,city,amount,when,note"]
    for i in range(1, rows + 1):
        lines.append(
            f"{i},user{random.randrange(10**6)},city{i % 97},{random.random() * 1000:.2f},"
            f"2025-01-{1 + i % 28:02d},{tag}"
        )
    return ("\r\n".join(lines) + "\r\n").encode()


def multipart(fields: dict[str, str], filename: str, content: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with ``fields`` and one ``file`` part; (body, content type)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/csv\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
