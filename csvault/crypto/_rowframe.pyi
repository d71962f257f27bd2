"""Type stub of the C accelerator (csvault/crypto/_rowframe.c); see RowCipher.copy_tuples."""

from typing import Any

def encrypt_copy_tuples(
    key: bytes,
    ad_prefix: bytes,
    attempt: int,
    first_row: int,
    rows: Any,
    tuple_prefix: bytes,
    blob_prefix: bytes,
) -> bytes | None: ...
