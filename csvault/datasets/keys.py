"""A dataset's data key and the ciphers built on it."""

from __future__ import annotations

from csvault.crypto.active import get_keyring
from csvault.crypto.rows import RowCipher
from csvault.datasets.models import Dataset

HEADER_ROW = 0  # the header is encrypted like a row, under row number 0


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
