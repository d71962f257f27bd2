"""Test files for the scanners, built at run time.

The EICAR test string is assembled from hex pieces here and never appears in clear in the
repository, so antivirus software on a developer's machine leaves the checkout alone.
"""

from __future__ import annotations

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
