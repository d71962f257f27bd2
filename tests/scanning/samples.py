"""Test files for the scanners, built at run time.

The EICAR test string is assembled from hex pieces here and never appears in clear in the
repository, so antivirus software on a developer's machine leaves the checkout alone.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIGNATURES = ROOT / "signatures"

_EICAR_HEX = (
    "58354f2150254041505b345c505a58353428505e2937434329377d24",
    "45494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a",
)


def eicar() -> bytes:
    """The 68-byte EICAR anti-virus test file."""
    return bytes.fromhex("".join(_EICAR_HEX))


def csv_with_cell(value: bytes, *, start: int, rows_after: int = 10) -> bytes:
    """A valid 3-column CSV whose ``note`` cell in one row is ``value``, at byte ``start``."""
    out = bytearray(b"id,name,note\n")
    number = 1
    while len(out) + 80 < start:
        out += b"%08d,%s,plain text\n" % (number, b"a" * 40)
        number += 1
    prefix = b"%08d," % number
    padding = start - len(out) - len(prefix) - 1
    assert padding >= 1, "start too close to the header"
    out += prefix + b"b" * padding + b"," + value + b"\n"
    for _ in range(rows_after):
        number += 1
        out += b"%08d,%s,plain text\n" % (number, b"c" * 40)
    assert out.index(value) == start
    return bytes(out)


def clean_csv(size: int) -> bytes:
    """A valid CSV of about ``size`` bytes with varied, harmless content."""
    out = bytearray(b"id,email,city,amount,comment\n")
    number = 0
    while len(out) < size:
        number += 1
        out += b'%d,user%d@example.com,City %d,%d.%02d,"note, with comma ""%d"""\n' % (
            number, number, number % 97, number * 7, number % 100, number
        )  # fmt: skip
    return bytes(out)


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` cut into chunks of ``size`` bytes (the last may be shorter)."""
    for position in range(0, len(data), size):
        yield data[position : position + size]


def zip_of_zeros(size: int, name: bytes = b"rows.csv") -> bytes:
    """A zip archive of one file of ``size`` zero bytes (a whole number of MiB), deflated
    to about a thousandth of that: a "zip bomb"."""
    block = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    # After a full flush the compressor keeps no history, so every MiB of zeros compresses
    # to the same bytes: the stream is one piece repeated (building it takes no time).
    piece = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    data = piece * (size // len(block)) + deflate.flush()
    crc = 0
    for _ in range(size // len(block)):
        crc = zlib.crc32(block, crc)
    # version needed, flags, method (8: deflate), time, date, CRC, sizes
    fields = struct.pack("<HHHHHIII", 20, 0, 8, 0, 0, crc, len(data), size)
    local = b"PK\x03\x04" + fields + struct.pack("<HH", len(name), 0) + name
    central = (
        b"PK\x01\x02"
        + struct.pack("<H", 20)
        + fields
        + struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0, 0)
        + name
    )
    end = b"PK\x05\x06" + struct.pack(
        "<HHHHIIH", 0, 0, 1, 1, len(central), len(local) + len(data), 0
    )
    return local + data + central + end


def html_csv(rows: int) -> bytes:
    """A CSV whose cells hold HTML with a script: clamd normalises it as HTML, which makes
    parts and levels that its MaxFiles and MaxRecursion count."""
    out = bytearray(b"id,html\n")
    for number in range(rows):
        out += (
            b"%d,\"<html><body><script>var a%d = unescape('%%41');</script>"
            b'<a href=""https://example.com/%d"">link</a></body></html>"\n'
            % (number, number, number)
        )
    return bytes(out)
