"""Encryption for csvault: the master keyring (``keyring``), rows sealed in AES-256-GCM
blocks (``rows``) and segmented file streams (``stream``).

Pure code with no Django dependency (``make lint`` checks); which master keys a process
uses is configured in csvault.datasets.keys.
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
