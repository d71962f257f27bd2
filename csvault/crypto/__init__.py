"""Encryption for csvault: master keyring, per-row AEAD blobs, and segmented file streams.

Pure code with no Django dependency; settings glue lives elsewhere.
"""

from csvault.crypto.keyring import (
    Keyring,
    KeyringError,
    derive_subkey,
    generate_master_key_spec,
    new_data_key,
    parse_master_keys,
)
from csvault.crypto.rows import RowCipher, RowDecryptError
from csvault.crypto.stream import (
    SEGMENT_SIZE,
    StreamDecryptError,
    StreamEncryptor,
    decrypt_stream,
    encrypted_size,
    open_decrypted,
)

__all__ = [
    "SEGMENT_SIZE",
    "Keyring",
    "KeyringError",
    "RowCipher",
    "RowDecryptError",
    "StreamDecryptError",
    "StreamEncryptor",
    "decrypt_stream",
    "derive_subkey",
    "encrypted_size",
    "generate_master_key_spec",
    "new_data_key",
    "open_decrypted",
    "parse_master_keys",
]
