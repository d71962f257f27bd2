"""Row-level encryption: one AES-256-GCM blob per CSV row.

Blob layout::

    version (1 byte, = 1) | attempt (4 bytes, big-endian) | ciphertext || tag (16 bytes)

The nonce is ``attempt (4 bytes BE) || row_number (8 bytes BE)``; the associated data is
``b"csvault/row/v1|" || dataset_id.bytes || row_number (8 bytes BE)``, so a blob only
decrypts under the dataset and row number it was written for.

Why nonces cannot repeat: every dataset has its own random 32-byte data key, and the row
key is derived from it with HKDF (``info=b"csvault/rows/v1"``, ``salt=dataset_id.bytes``),
so the row key is used by exactly one dataset and for nothing but rows. Under that key the
nonce is the pair ``(attempt, row_number)``. ``attempt`` is a database counter that is
incremented every time an ingest of the dataset starts, and only one ingest of a dataset
runs at a time, so two ingests never share an attempt; within one ingest every row number
is encrypted once. Hence no ``(key, nonce)`` pair is ever used for two different
plaintexts. The one way to break this is to encrypt a row number twice within one attempt
with different contents (re-encrypting identical contents yields an identical blob and
leaks nothing); anything that re-processes rows, such as a retried task, must therefore
start a new attempt.

Plaintext serialization (inside the ciphertext, so it is authenticated) starts with a
format byte:

* ``0x00`` - the UTF-8 encoding of ``"\\x00".join(values)``. Used when there is at least
  one value and no value contains NUL, i.e. almost always. This is the fast path: one join,
  one encode, and on the way back one decode and one split, all in C.
* ``0x01`` - general form for anything else (the empty list, values containing NUL): a
  4-byte big-endian value count, one 4-byte big-endian length per value (in code points),
  then the UTF-8 encoding of the concatenated values.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from itertools import repeat

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from csvault.crypto.keyring import derive_subkey

try:  # the optional C accelerator (setup.py); same bytes as the Python path
    from csvault.crypto import _rowframe
except ImportError:  # pragma: no cover - depends on the build
    _rowframe = None  # type: ignore[assignment]

__all__ = ["NATIVE_AVAILABLE", "ROW_FORMAT_VERSION", "RowCipher", "RowDecryptError"]

NATIVE_AVAILABLE = _rowframe is not None

ROW_FORMAT_VERSION = 1
_VERSION_BYTE = bytes([ROW_FORMAT_VERSION])
_HEADER_SIZE = 1 + 4
_TAG_SIZE = 16
_AD_PREFIX = b"csvault/row/v1|"
_KDF_INFO = b"csvault/rows/v1"

_FORMAT_SEPARATED = 0x00
_FORMAT_SEPARATED_BYTE = bytes([_FORMAT_SEPARATED])
_FORMAT_COUNTED = 0x01
_FORMAT_COUNTED_BYTE = bytes([_FORMAT_COUNTED])
_U32 = struct.Struct(">I")
# attempt (4 bytes BE) || row_number (8 bytes BE), packed in C for a whole batch.
_NONCE = struct.Struct(">IQ")
_MAX_ATTEMPT = 2**32 - 1
_MAX_ROW_NUMBER = 2**64 - 1
_MAX_INT8 = 2**63 - 1


class RowDecryptError(Exception):
    """A row blob could not be decrypted: wrong key, dataset or row number, or tampering.

    The message names the row number only; it never contains plaintext.
    """


def _serialize_counted(values: Sequence[str]) -> bytes:
    lengths = [len(value) for value in values]
    header = struct.pack(f">I{len(lengths)}I", len(lengths), *lengths)
    return _FORMAT_COUNTED_BYTE + header + "".join(values).encode("utf-8")


def _deserialize_counted(plaintext: bytes) -> list[str]:
    # Called only on authenticated plaintext, but still checked so that a bug can never
    # turn into silently wrong values.
    if len(plaintext) < 5:
        raise ValueError("counted row is too short")
    (count,) = _U32.unpack_from(plaintext, 1)
    text_start = 5 + 4 * count
    if len(plaintext) < text_start:
        raise ValueError("counted row header is truncated")
    lengths = struct.unpack_from(f">{count}I", plaintext, 5)
    text = plaintext[text_start:].decode("utf-8")
    if sum(lengths) != len(text):
        raise ValueError("counted row lengths do not match its text")
    values: list[str] = []
    position = 0
    for length in lengths:
        values.append(text[position : position + length])
        position += length
    return values


class RowCipher:
    """Encrypts and decrypts the rows of one dataset for one ingest attempt.

    ``data_key`` is the dataset's 32-byte data key; the AES-256-GCM row key is derived
    from it with HKDF-SHA256 (``info=b"csvault/rows/v1"``, ``salt=dataset_id.bytes``).
    ``attempt`` (0 to 2**32-1) only matters for :meth:`encrypt`; :meth:`decrypt` reads it
    from the blob, so one cipher decrypts rows written by any attempt.

    Raises ``ValueError`` for a data key that is not 32 bytes or an attempt out of range.
    Instances are immutable and safe to share between threads.
    """

    __slots__ = (
        "_ad_pack",
        "_ad_prefix",
        "_attempt",
        "_attempt_bytes",
        "_blob_header",
        "_decrypt",
        "_encrypt",
        "_key",
    )

    def __init__(self, data_key: bytes, dataset_id: uuid.UUID, attempt: int = 0) -> None:
        if not 0 <= attempt <= _MAX_ATTEMPT:
            raise ValueError(f"attempt must be between 0 and {_MAX_ATTEMPT}, got {attempt}")
        self._key = derive_subkey(data_key, dataset_id, _KDF_INFO)
        aead = AESGCM(self._key)
        # Bound methods and constant prefixes are cached: at ~1 µs per row, attribute
        # lookups and re-encoding constants would be a measurable share of the cost.
        self._encrypt = aead.encrypt
        self._decrypt = aead.decrypt
        self._attempt_bytes = attempt.to_bytes(4, "big")
        self._blob_header = _VERSION_BYTE + self._attempt_bytes
        self._ad_prefix = _AD_PREFIX + dataset_id.bytes
        self._attempt = attempt
        # ad_prefix || row_number (8 bytes BE) in one C call per row.
        self._ad_pack = struct.Struct(f">{len(self._ad_prefix)}sQ").pack

    def encrypt(self, row_number: int, values: Sequence[str]) -> bytes:
        """Encrypt one row's values; returns the blob (see the module docstring).

        ``row_number`` must be in 0..2**64-1 and must not be reused within this attempt
        for different values. Any sequence of ``str`` round-trips exactly through
        :meth:`decrypt`, including ``[]``, empty strings, NUL and non-BMP characters (lone
        surrogates cannot be encoded as UTF-8 and raise ``UnicodeEncodeError``).
        Raises ``ValueError`` for an out-of-range row number.
        """
        try:
            row_bytes = row_number.to_bytes(8, "big")
        except OverflowError:
            raise ValueError(
                f"row number must be between 0 and {_MAX_ROW_NUMBER}, got {row_number}"
            ) from None
        # NUL-separated is unambiguous only if no value contains NUL; a plain join plus a
        # membership test (both C loops) checks that faster than any per-value loop.
        if values and "\x00" not in "".join(values):
            plaintext = _FORMAT_SEPARATED_BYTE + "\x00".join(values).encode("utf-8")
        else:
            plaintext = _serialize_counted(values)
        return self._blob_header + self._encrypt(
            self._attempt_bytes + row_bytes, plaintext, self._ad_prefix + row_bytes
        )

    def encrypt_rows(self, first_row_number: int, rows: Sequence[Sequence[str]]) -> list[bytes]:
        """Encrypt consecutive rows numbered ``first_row_number``, ``first_row_number + 1``...

        Returns the same blobs as calling :meth:`encrypt` on each row, in order, at a
        fraction of the cost (see :meth:`encrypt_rows_split`). Raises ``ValueError`` if any
        row number falls outside 0..2**64-1.
        """
        prefix, ciphertexts = self.encrypt_rows_split(first_row_number, rows)
        return list(map(prefix.__add__, ciphertexts))

    def encrypt_rows_split(
        self, first_row_number: int, rows: Sequence[Sequence[str]]
    ) -> tuple[bytes, list[bytes]]:
        """Like :meth:`encrypt_rows`, but returns ``(prefix, ciphertexts)``.

        Blob ``i`` is ``prefix + ciphertexts[i]`` (the prefix is the version and attempt
        header, the same for every row of this cipher), so a caller that frames the blobs
        anyway (the binary COPY stream) can write the prefix itself instead of copying
        every blob once more.

        For the common case (every row has at least one value and no value contains NUL)
        serialization, nonces, associated data and AES-GCM run as C-level ``map`` pipelines
        over the batch, with no Python bytecode per row; other batches take the per-row
        path. The nonce rules of :meth:`encrypt` apply: a row number must not be encrypted
        twice in one attempt with different values.
        """
        count = len(rows)
        if not count:
            return self._blob_header, []
        last = first_row_number + count - 1
        if first_row_number < 0 or last > _MAX_ROW_NUMBER:
            raise ValueError(
                f"row numbers must be between 0 and {_MAX_ROW_NUMBER}, "
                f"got {first_row_number}..{last}"
            )
        numbers = range(first_row_number, last + 1)
        texts = list(map("\x00".join, rows))
        # Joined with NUL, the texts hold exactly sum(len(row)) - 1 NULs if and only if no
        # value contains one; an empty row needs the counted format. Both are C scans.
        widths = list(map(len, rows))
        if min(widths) == 0 or "\x00".join(texts).count("\x00") != sum(widths) - 1:
            skip = len(self._blob_header)
            blobs = [self.encrypt(n, values) for n, values in zip(numbers, rows, strict=True)]
            return self._blob_header, [blob[skip:] for blob in blobs]
        plaintexts = map(str.encode, map("\x00".__add__, texts))  # format byte 0x00, UTF-8
        nonces = map(_NONCE.pack, repeat(self._attempt), numbers)
        associated = map(self._ad_pack, repeat(self._ad_prefix), numbers)
        return self._blob_header, list(map(self._encrypt, nonces, plaintexts, associated))

    def copy_tuples(
        self, first_row_number: int, rows: list[list[str]], tuple_prefix: bytes
    ) -> bytes | None:
        """Encrypt consecutive rows straight into PostgreSQL binary COPY tuples, in C.

        Each tuple is ``tuple_prefix`` (the constant start of every tuple of the
        dataset: field count, the dataset id field, the int8 length), the row number
        (int64), the blob length (int32) and the blob: the same blobs, byte for
        byte, as :meth:`encrypt_rows_split`, framed the way
        ``csvault.datasets.rowstore.pg_binary_copy_tuples`` frames them. The
        encryption runs with the GIL released.

        Returns None when the C accelerator is not built, or when a row needs the
        general row format (an empty row, a value containing NUL): the caller then
        takes the Python path. The nonce rules of :meth:`encrypt` apply.
        """
        if _rowframe is None:
            return None
        # The COPY column is int8: row numbers stop at 2**63 - 1 there.
        if first_row_number < 0 or first_row_number + len(rows) - 1 > _MAX_INT8:
            raise ValueError(
                f"row numbers must be between 0 and {_MAX_INT8} for COPY, got {first_row_number}.."
            )
        return _rowframe.encrypt_copy_tuples(
            self._key,
            self._ad_prefix,
            self._attempt,
            first_row_number,
            rows,
            tuple_prefix,
            self._blob_header,
        )

    def decrypt(self, row_number: int, blob: bytes | bytearray | memoryview) -> list[str]:
        """Decrypt a blob written by :meth:`encrypt` for the same dataset and row number.

        ``blob`` may be any bytes-like object (drivers often return ``memoryview``).

        Raises :class:`RowDecryptError` if the blob is malformed, has an unknown version,
        was altered, or belongs to another row number, dataset or data key. Raises
        ``ValueError`` for an out-of-range row number.
        """
        try:
            row_bytes = row_number.to_bytes(8, "big")
        except OverflowError:
            raise ValueError(
                f"row number must be between 0 and {_MAX_ROW_NUMBER}, got {row_number}"
            ) from None
        if type(blob) is not bytes:
            # Database drivers may hand back memoryview (e.g. Django's BinaryField).
            blob = bytes(blob)
        if len(blob) < _HEADER_SIZE + _TAG_SIZE + 1:
            raise RowDecryptError(f"row {row_number}: encrypted blob is too short")
        if blob[0] != ROW_FORMAT_VERSION:
            raise RowDecryptError(f"row {row_number}: unsupported row format version {blob[0]}")
        try:
            plaintext = self._decrypt(
                blob[1:_HEADER_SIZE] + row_bytes, blob[_HEADER_SIZE:], self._ad_prefix + row_bytes
            )
        except InvalidTag:
            raise RowDecryptError(
                f"row {row_number}: authentication failed (wrong key, dataset or row number, "
                "or the blob was altered)"
            ) from None
        try:
            if plaintext[0] == _FORMAT_SEPARATED:
                return plaintext[1:].decode("utf-8").split("\x00")
            if plaintext[0] == _FORMAT_COUNTED:
                return _deserialize_counted(plaintext)
        except ValueError:  # UnicodeDecodeError is a ValueError
            raise RowDecryptError(f"row {row_number}: decrypted row is malformed") from None
        raise RowDecryptError(f"row {row_number}: unknown row encoding {plaintext[0]}")
