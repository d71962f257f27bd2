"""Master keys, per-dataset data keys, and the envelope that ties them together.

Key hierarchy:

* **Master keys** come from configuration as a spec string ``id1:base64key,id2:base64key``
  (:func:`parse_master_keys`). The first key is *active*: new data keys are wrapped under
  it. The others are kept only so that data keys wrapped under them can still be unwrapped
  and re-wrapped (:meth:`Keyring.rewrap`) during a key rotation.
* **Data keys** are random 32-byte keys, one per dataset (:func:`new_data_key`). They are
  stored only in wrapped form, next to the id of the master key that wrapped them.
* **Subkeys** are derived from a data key with HKDF-SHA256 (:func:`derive_subkey`), one per
  purpose (rows, file), so that no two purposes ever encrypt under the same AES key.

Nothing in this module ever puts key material into an exception message or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "DATA_KEY_SIZE",
    "MASTER_KEY_SIZE",
    "WRAPPED_KEY_SIZE",
    "Keyring",
    "KeyringError",
    "derive_subkey",
    "generate_master_key_spec",
    "new_data_key",
    "parse_master_keys",
]

MASTER_KEY_SIZE = 32
DATA_KEY_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16
#: Length of the bytes returned by :meth:`Keyring.wrap`: nonce, encrypted data key, GCM tag.
WRAPPED_KEY_SIZE = _NONCE_SIZE + DATA_KEY_SIZE + _TAG_SIZE

# The key id is part of the associated data, so a wrapped key cannot be presented under
# another id; the version label lets a future format be told apart.
_WRAP_AD_PREFIX = b"csvault/dek/v1|"
_KEY_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEY_ID_RULE = "ids must be 1 to 64 characters from A-Z, a-z, 0-9, '_', '.', '-'"


class KeyringError(Exception):
    """A master key spec is invalid, or a data key cannot be unwrapped.

    Messages identify keys by id or by position in the spec, never by content.
    """


def new_data_key() -> bytes:
    """Return a fresh random 32-byte data key (one per dataset)."""
    return os.urandom(DATA_KEY_SIZE)


def derive_subkey(data_key: bytes, dataset_id: uuid.UUID, info: bytes) -> bytes:
    """Derive a 32-byte AES key for one purpose from a dataset's data key.

    HKDF-SHA256 with ``salt=dataset_id.bytes`` and ``info`` naming the purpose (for example
    ``b"csvault/rows/v1"``). Different ``info`` values give independent keys, so row blobs
    and file segments never share an AES-GCM key (and hence never share a nonce space).

    Raises ``ValueError`` if ``data_key`` is not 32 bytes.
    """
    if len(data_key) != DATA_KEY_SIZE:
        raise ValueError(f"data key must be {DATA_KEY_SIZE} bytes, got {len(data_key)}")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=dataset_id.bytes, info=info)
    return hkdf.derive(bytes(data_key))


def _is_valid_key_id(key_id: str) -> bool:
    return _KEY_ID_RE.fullmatch(key_id) is not None


def _wrap_ad(key_id: str) -> bytes:
    return _WRAP_AD_PREFIX + key_id.encode("ascii")


class Keyring:
    """An ordered set of AES-256-GCM master keys; the first one is active.

    Build one with :func:`parse_master_keys`, or directly from ``(id, key)`` pairs.
    Raises :class:`KeyringError` if there are no keys, an id is invalid or repeated, or a
    key is not 32 bytes.
    """

    __slots__ = ("_aeads", "_ids")

    def __init__(self, keys: Iterable[tuple[str, bytes]]) -> None:
        aeads: dict[str, AESGCM] = {}
        for position, (key_id, key) in enumerate(keys, start=1):
            if not isinstance(key_id, str) or not _is_valid_key_id(key_id):
                raise KeyringError(f"master key #{position} has an invalid id: {_KEY_ID_RULE}")
            if key_id in aeads:
                raise KeyringError(f"master key id {key_id!r} appears more than once")
            if len(key) != MASTER_KEY_SIZE:
                raise KeyringError(
                    f"master key {key_id!r} is {len(key)} bytes; it must be {MASTER_KEY_SIZE}"
                )
            aeads[key_id] = AESGCM(bytes(key))
        if not aeads:
            raise KeyringError("no master keys configured")
        self._aeads = aeads
        self._ids = tuple(aeads)

    @property
    def active_id(self) -> str:
        """Id of the master key that :meth:`wrap` uses (the first in the spec)."""
        return self._ids[0]

    @property
    def ids(self) -> tuple[str, ...]:
        """All master key ids, active first, in spec order."""
        return self._ids

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._aeads

    def __repr__(self) -> str:
        return f"Keyring(ids={self._ids!r})"

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        """Encrypt a 32-byte data key under the active master key.

        Returns ``(key_id, wrapped)`` where ``wrapped`` is a random 12-byte nonce followed
        by the AES-256-GCM ciphertext and tag (:data:`WRAPPED_KEY_SIZE` bytes in all). The
        associated data binds the key id. Store both values; :meth:`unwrap` needs both.

        Raises ``ValueError`` if ``data_key`` is not 32 bytes.
        """
        if len(data_key) != DATA_KEY_SIZE:
            raise ValueError(f"data key must be {DATA_KEY_SIZE} bytes, got {len(data_key)}")
        key_id = self._ids[0]
        # Random nonces are safe here: one wrap per dataset (plus one per rotation) stays
        # far below the ~2**32 messages per key that random 96-bit GCM nonces allow.
        nonce = os.urandom(_NONCE_SIZE)
        wrapped = self._aeads[key_id].encrypt(nonce, bytes(data_key), _wrap_ad(key_id))
        return key_id, nonce + wrapped

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        """Decrypt a data key produced by :meth:`wrap` (by this or an earlier keyring).

        Raises :class:`KeyringError` if ``key_id`` is not in the ring ("unknown master key
        id ..."), or if ``wrapped`` is malformed, was tampered with, or was wrapped under
        another key or id.
        """
        aead = self._aeads.get(key_id)
        if aead is None:
            raise KeyringError(
                f"unknown master key id {key_id!r}; configured ids: {', '.join(self._ids)}"
            )
        wrapped = bytes(wrapped)
        if len(wrapped) != WRAPPED_KEY_SIZE:
            raise KeyringError(
                f"wrapped data key under {key_id!r} is {len(wrapped)} bytes; "
                f"expected {WRAPPED_KEY_SIZE}"
            )
        try:
            data_key = aead.decrypt(wrapped[:_NONCE_SIZE], wrapped[_NONCE_SIZE:], _wrap_ad(key_id))
        except InvalidTag:
            raise KeyringError(
                f"wrapped data key failed authentication under master key {key_id!r} "
                "(wrong key for this id, or the stored value was altered)"
            ) from None
        return data_key

    def rewrap(self, key_id: str, wrapped: bytes) -> tuple[str, bytes]:
        """Unwrap a data key and wrap it again under the active master key (rotation).

        Returns the new ``(key_id, wrapped)``. Always produces a fresh nonce, even when
        ``key_id`` is already the active id. Raises like :meth:`unwrap`.
        """
        return self.wrap(self.unwrap(key_id, wrapped))


def parse_master_keys(spec: str) -> Keyring:
    """Parse ``id1:base64key,id2:base64key`` into a :class:`Keyring`; the first is active.

    Whitespace around entries, ids and keys is ignored. Each key must be standard base64
    (with padding) of exactly 32 bytes; ids must match ``[A-Za-z0-9_.-]{1,64}`` and be
    unique. Raises :class:`KeyringError` otherwise, with a message that points at the
    entry by position and never contains key material.
    """
    if not spec or not spec.strip():
        raise KeyringError("no master keys configured: the key spec is empty")
    pairs: list[tuple[str, bytes]] = []
    seen: dict[str, int] = {}
    for position, raw_entry in enumerate(spec.split(","), start=1):
        entry = raw_entry.strip()
        if not entry:
            raise KeyringError(f"master key entry #{position} is empty (stray comma?)")
        key_id, sep, encoded = entry.partition(":")
        key_id, encoded = key_id.strip(), encoded.strip()
        if not sep:
            raise KeyringError(f"master key entry #{position} must look like 'id:base64key'")
        # The id is not echoed when it is invalid: a swapped 'key:id' entry would
        # otherwise print the key.
        if not _is_valid_key_id(key_id):
            raise KeyringError(f"master key entry #{position} has an invalid id: {_KEY_ID_RULE}")
        if key_id in seen:
            raise KeyringError(
                f"master key entry #{position} repeats the id {key_id!r} "
                f"of entry #{seen[key_id]}; ids must be unique"
            )
        seen[key_id] = position
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            # ``from None``: the decoder's own message is dropped so no fragment of the
            # input can ride along in a chained traceback.
            raise KeyringError(
                f"master key {key_id!r} (entry #{position}) is not valid standard base64"
            ) from None
        if len(key) != MASTER_KEY_SIZE:
            raise KeyringError(
                f"master key {key_id!r} (entry #{position}) decodes to {len(key)} bytes; "
                f"it must be {MASTER_KEY_SIZE} bytes"
            )
        pairs.append((key_id, key))
    return Keyring(pairs)


def generate_master_key_spec(key_id: str | None = None) -> str:
    """Return a new ``id:base64key`` entry holding 32 fresh random bytes.

    ``key_id`` defaults to ``k`` followed by the current UTC time, e.g.
    ``k20261127T181500``. To rotate, put the new entry first in the spec and keep the old
    ones after it until every data key has been re-wrapped. Raises :class:`KeyringError`
    if ``key_id`` is not a valid id.
    """
    if key_id is None:
        key_id = f"k{datetime.now(UTC):%Y%m%dT%H%M%S}"
    if not _is_valid_key_id(key_id):
        raise KeyringError(f"invalid master key id: {_KEY_ID_RULE}")
    return f"{key_id}:{base64.b64encode(os.urandom(MASTER_KEY_SIZE)).decode('ascii')}"
