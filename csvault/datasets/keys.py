"""Keys: the master keyring this process is configured with, and a dataset's data key
and the ciphers built on it."""

from __future__ import annotations

import functools
import json
from typing import Any

from django.conf import settings

from csvault.crypto.keyring import Keyring, parse_master_keys
from csvault.crypto.rows import RowCipher
from csvault.datasets.models import Dataset

HEADER_ROW = 0  # the header is encrypted like a row, under row number 0
# The warnings and the profile, likewise, under numbers no data row reaches (a row
# number is at most CSVAULT_MAX_ROWS); each is written once per ingest attempt.
WARNINGS_ROW = 2**64 - 2
PROFILE_ROW = 2**64 - 1


@functools.lru_cache(maxsize=4)
def _keyring_for(spec: str) -> Keyring:
    return parse_master_keys(spec)


def get_keyring() -> Keyring:
    """The keyring of ``CSVAULT_MASTER_KEYS``; cached per spec, so settings overrides in
    tests take effect."""
    return _keyring_for(settings.CSVAULT_MASTER_KEYS)


def dataset_data_key(dataset: Dataset) -> bytes:
    return get_keyring().unwrap(dataset.key_id, bytes(dataset.wrapped_key))


def dataset_row_cipher(dataset: Dataset, *, attempt: int = 0) -> RowCipher:
    return RowCipher(dataset_data_key(dataset), dataset.id, attempt)


def dataset_columns(dataset: Dataset, cipher: RowCipher | None = None) -> list[str]:
    """The header names, decrypted; empty until the ingest has read the header."""
    if not dataset.columns_ciphertext:
        return []
    cipher = cipher or dataset_row_cipher(dataset)
    return cipher.decrypt(HEADER_ROW, bytes(dataset.columns_ciphertext))


def warnings_from(values: list[str]) -> list[dict[str, Any]]:
    """The warnings list of its decrypted form (one JSON value)."""
    return list(json.loads(values[0])) if values else []


def dataset_warnings(dataset: Dataset, cipher: RowCipher | None = None) -> list[dict[str, Any]]:
    """The spreadsheet habits tolerated in the file (csvio's warnings), decrypted; empty
    until the ingest has completed."""
    if not dataset.warnings_ciphertext:
        return []
    cipher = cipher or dataset_row_cipher(dataset)
    return warnings_from(cipher.decrypt(WARNINGS_ROW, bytes(dataset.warnings_ciphertext)))


def dataset_profile(dataset: Dataset) -> list[dict[str, Any]] | None:
    """The column profile (csvault.csvio.profile), decrypted; None until completed."""
    if not dataset.profile_ciphertext:
        return None
    values = dataset_row_cipher(dataset).decrypt(PROFILE_ROW, bytes(dataset.profile_ciphertext))
    return list(json.loads(values[0]))
