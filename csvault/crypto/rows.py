"""Row-level encryption with AES-256-GCM: the rows of a dataset, sealed in blocks.

Two blob layouts share one row key and one nonce scheme::

    version (1 byte) | attempt (4 bytes, big-endian) | ciphertext || tag (16 bytes)

* version 1, one row (:meth:`RowCipher.encrypt`; the header of a dataset, and every
  stored row before blocks): the nonce is ``attempt (4 bytes BE) || row_number (8 bytes
  BE)``, the associated data ``b"csvault/row/v1|" || dataset_id.bytes || row_number``.
* version 2, a block of consecutive rows (:meth:`RowCipher.seal_blocks`; how the
  ingest stores rows): the nonce is ``attempt || first_row_number``, the associated
  data ``b"csvault/rows/v2|" || dataset_id.bytes || first_row_number``. The number of
  rows is inside the authenticated plaintext, so a block decrypts only under the
  dataset and first row it was written for, and says how many rows it holds.

Why blocks: PostgreSQL spends about 2 µs per stored tuple on its primary-key entry and
tuple overhead, more than a raw COPY spends on a whole row; one tuple per block of up to
64 rows (about 4 KB stored, of up to 8 KB of text compressed first) divides that by the
rows per block (docs/performance.md). Every row is still encrypted
and authenticated; a reader decrypts the few blocks around the rows it wants.

Why nonces cannot repeat: every dataset has its own random 32-byte data key, and the row
key is derived from it with HKDF (``info=b"csvault/rows/v1"``, ``salt=dataset_id.bytes``),
so the row key is used by exactly one dataset and for nothing but rows. Under that key the
nonce is the pair ``(attempt, row_number)`` (a block uses its first row's number; the
header uses row number 0, which no block starts at). ``attempt`` is a database counter
that is incremented every time an ingest of the dataset starts, and only one ingest of a
dataset runs at a time, so two ingests never share an attempt; within one ingest every
row number is encrypted once (starts one block at most). Hence no ``(key, nonce)`` pair
is ever used for two different plaintexts. Anything that re-processes rows, such as a
retried task, must therefore start a new attempt.

The plaintexts inside (a row's values, a block's rows) are defined in
csvault.csvio.blocks; they are inside the ciphertext, so they are authenticated. A
cipher made with ``compress=True`` compresses each block plaintext before sealing it
(the "compressed" block format); every cipher opens blocks of any format.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from itertools import accumulate, repeat

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from csvault.crypto.keyring import derive_subkey
from csvault.csvio.blocks import (
    BLOCK_FORMATS,
    BLOCK_MAX_ROWS,
    BLOCK_MAX_STORED_BYTES,
    BLOCK_TARGET_BYTES,
    COMPRESSED_BLOCK_TARGET_BYTES,
    UnknownFormat,
    block_rows,
    compressed_block,
    grid_block,
    grid_row_count,
    row_list_block,
    row_plaintext,
    row_values,
    split_grid,
)

__all__ = ["ROW_FORMAT_VERSION", "RowCipher", "RowDecryptError"]

ROW_FORMAT_VERSION = 1
BLOCK_FORMAT_VERSION = 2
_VERSION_BYTE = bytes([ROW_FORMAT_VERSION])
_BLOCK_VERSION_BYTE = bytes([BLOCK_FORMAT_VERSION])
_BLOCK_AD_PREFIX = b"csvault/rows/v2|"
_HEADER_SIZE = 1 + 4
_TAG_SIZE = 16
_AD_PREFIX = b"csvault/row/v1|"
_KDF_INFO = b"csvault/rows/v1"

# attempt (4 bytes BE) || row_number (8 bytes BE), packed in C for a whole batch.
_NONCE = struct.Struct(">IQ")
_MAX_ATTEMPT = 2**32 - 1
_MAX_ROW_NUMBER = 2**64 - 1


def _row_bytes(row_number: int) -> bytes:
    """The 8-byte big-endian row number of nonces and associated data."""
    try:
        return row_number.to_bytes(8, "big")
    except OverflowError:
        raise ValueError(
            f"row number must be between 0 and {_MAX_ROW_NUMBER}, got {row_number}"
        ) from None


class RowDecryptError(Exception):
    """A row blob could not be decrypted: wrong key, dataset or row number, or tampering.

    The message names the row number only; it never contains plaintext.
    """


class RowCipher:
    """Encrypts and decrypts the rows of one dataset for one ingest attempt.

    ``data_key`` is the dataset's 32-byte data key; the AES-256-GCM row key is derived
    from it with HKDF-SHA256 (``info=b"csvault/rows/v1"``, ``salt=dataset_id.bytes``).
    ``attempt`` (0 to 2**32-1) only matters for :meth:`encrypt` and :meth:`seal_blocks`;
    the decrypting methods read it from the blob, so one cipher decrypts rows written by
    any attempt. With ``compress`` the sealing methods compress each block's plaintext
    first, and blocks aim at :attr:`block_target_bytes` of text, twice as much.

    Raises ``ValueError`` for a data key that is not 32 bytes or an attempt out of range.
    Instances are immutable and safe to share between threads.
    """

    __slots__ = (
        "_ad_prefix",
        "_attempt",
        "_attempt_bytes",
        "_blob_header",
        "_block_ad_pack",
        "_block_ad_prefix",
        "_block_header",
        "_compress",
        "_decrypt",
        "_encrypt",
        "_key",
        "block_target_bytes",
    )

    def __init__(
        self, data_key: bytes, dataset_id: uuid.UUID, attempt: int = 0, *, compress: bool = False
    ) -> None:
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
        self._block_header = _BLOCK_VERSION_BYTE + self._attempt_bytes
        self._block_ad_prefix = _BLOCK_AD_PREFIX + dataset_id.bytes
        # block_ad_prefix || first row number (8 bytes BE) in one C call.
        self._block_ad_pack = struct.Struct(f">{len(self._block_ad_prefix)}sQ").pack
        self._compress = compress
        #: About how much text a block holds (the C parser's target too).
        self.block_target_bytes = COMPRESSED_BLOCK_TARGET_BYTES if compress else BLOCK_TARGET_BYTES

    def encrypt(self, row_number: int, values: Sequence[str]) -> bytes:
        """Encrypt one row's values; returns the blob (see the module docstring).

        ``row_number`` must be in 0..2**64-1 and must not be reused within this attempt
        for different values. Any sequence of ``str`` round-trips exactly through
        :meth:`decrypt`, including ``[]``, empty strings, NUL and non-BMP characters (lone
        surrogates cannot be encoded as UTF-8 and raise ``UnicodeEncodeError``).
        Raises ``ValueError`` for an out-of-range row number.
        """
        row_bytes = _row_bytes(row_number)
        return self._blob_header + self._encrypt(
            self._attempt_bytes + row_bytes, row_plaintext(values), self._ad_prefix + row_bytes
        )

    def seal_blocks(
        self,
        first_row_number: int,
        rows: Sequence[Sequence[str]],
        *,
        max_rows: int = BLOCK_MAX_ROWS,
        target_bytes: int | None = None,
    ) -> tuple[bytes, range, list[bytes]]:
        """Encrypt consecutive rows (numbered from ``first_row_number``) as blocks.

        Returns ``(prefix, starts, ciphertexts)``: block ``i`` holds the rows from
        ``starts[i]`` up to the next start (or the last row), and its blob is
        ``prefix + ciphertexts[i]`` (the prefix, version and attempt, is the same for
        every block of this cipher, so a caller that frames the blobs anyway can
        write it itself instead of copying every blob once more). Every block has
        the same number of rows (the last one may have fewer): at most ``max_rows``,
        and about ``target_bytes`` (default :attr:`block_target_bytes`) of text, judged
        from the first rows.

        :meth:`decrypt_block` with the block's start gives its rows back. The nonce
        rules of :meth:`encrypt` apply to the starts: a row number must not start two
        blocks of different rows in one attempt.
        """
        count = len(rows)
        if not count:
            return self._block_header, range(0), []
        last = first_row_number + count - 1
        if first_row_number < 0 or last > _MAX_ROW_NUMBER:
            raise ValueError(
                f"row numbers must be between 0 and {_MAX_ROW_NUMBER}, "
                f"got {first_row_number}..{last}"
            )
        if not 1 <= max_rows <= BLOCK_MAX_ROWS:
            raise ValueError(f"max_rows must be between 1 and {BLOCK_MAX_ROWS}, got {max_rows}")
        if target_bytes is None:
            target_bytes = self.block_target_bytes
        sample = rows[:8]
        text_per_row = sum(map(len, map("\x00".join, sample))) / len(sample) + 1
        per = max(1, min(max_rows, int(target_bytes // text_per_row)))
        starts = range(first_row_number, last + 1, per)
        blocks = (rows[offset : offset + per] for offset in range(0, count, per))
        plaintexts = [grid_block(block) or row_list_block(block) for block in blocks]
        return self._block_header, starts, self._seal(starts, self._stored(plaintexts))

    def seal_grid_blocks(
        self, first_row_number: int, plaintexts: Sequence[bytes], counts: Sequence[int]
    ) -> tuple[bytes, list[int], list[bytes]]:
        """Encrypt block plaintexts made elsewhere (the C CSV parser), like :meth:`seal_blocks`.

        ``plaintexts[i]`` must be a grid plaintext (:func:`grid_block`) of ``counts[i]``
        rows; the blocks hold consecutive rows from ``first_row_number`` on. Returns
        ``(prefix, starts, ciphertexts)`` as :meth:`seal_blocks` does; a block whose
        sealed plaintext would be over ``BLOCK_MAX_STORED_BYTES`` (wide rows that do not
        compress) is sealed as two or more blocks, so there may be more starts than
        plaintexts.
        """
        if not plaintexts:
            return self._block_header, [], []
        starts = list(accumulate(counts[:-1], initial=first_row_number))
        if len(starts) != len(plaintexts) or (
            first_row_number < 0 or starts[-1] + counts[-1] - 1 > _MAX_ROW_NUMBER
        ):
            raise ValueError(
                f"one count per block, and row numbers between 0 and {_MAX_ROW_NUMBER}"
            )
        # Each block must say it holds as many rows (at least one) as its count: two
        # blocks at one start would share a nonce.
        if any(c < 1 or grid_row_count(p) != c for p, c in zip(plaintexts, counts, strict=True)):
            raise ValueError("seal_grid_blocks takes grid plaintexts of their counts' rows")
        stored = self._stored(plaintexts)
        if max(map(len, stored)) > BLOCK_MAX_STORED_BYTES:
            starts, stored = self._fit(starts, plaintexts, counts, stored)
        return self._block_header, starts, self._seal(starts, stored)

    def _stored(self, plaintexts: Sequence[bytes]) -> list[bytes]:
        """The block plaintexts as sealed: compressed if this cipher compresses."""
        if self._compress:
            return list(map(compressed_block, plaintexts))
        return list(plaintexts)

    def _fit(
        self,
        starts: Sequence[int],
        plaintexts: Sequence[bytes],
        counts: Sequence[int],
        stored: Sequence[bytes],
    ) -> tuple[list[int], list[bytes]]:
        """Starts and stored plaintexts of grid blocks (``stored``: their stored forms),
        each block of two rows or more whose stored form is over
        ``BLOCK_MAX_STORED_BYTES`` cut in two by rows, again until it fits or holds one
        row; only the halves are compressed anew. The blocks still hold consecutive
        rows, each starting at its own row number."""
        fitted_starts: list[int] = []
        fitted: list[bytes] = []
        pending = list(zip(starts, plaintexts, counts, stored, strict=True))[::-1]
        while pending:
            start, plaintext, count, sealed = pending.pop()
            if len(sealed) > BLOCK_MAX_STORED_BYTES and count > 1:
                first, first_count, second, second_count = split_grid(plaintext)
                first_sealed, second_sealed = self._stored([first, second])
                pending.append((start + first_count, second, second_count, second_sealed))
                pending.append((start, first, first_count, first_sealed))
                continue
            fitted_starts.append(start)
            fitted.append(sealed)
        return fitted_starts, fitted

    def _seal(self, starts: Sequence[int], stored: Sequence[bytes]) -> list[bytes]:
        """AES-256-GCM of each stored block plaintext under its start's nonce and
        associated data."""
        nonces = map(_NONCE.pack, repeat(self._attempt), starts)
        associated = map(self._block_ad_pack, repeat(self._block_ad_prefix), starts)
        return list(map(self._encrypt, nonces, stored, associated))

    def decrypt_block(
        self, first_row_number: int, blob: bytes | bytearray | memoryview
    ) -> list[list[str]]:
        """The rows of a block stored under ``first_row_number``, in order.

        Reads both stored formats: a block written by :meth:`seal_blocks` and a single
        row written by :meth:`encrypt` (the format before blocks, one row per blob).
        Raises :class:`RowDecryptError` like :meth:`decrypt`.
        """
        if type(blob) is not bytes:
            blob = bytes(blob)
        if blob[:1] != _BLOCK_VERSION_BYTE:
            return [self.decrypt(first_row_number, blob)]
        start = _row_bytes(first_row_number)
        where = f"block at row {first_row_number}"
        if len(blob) < _HEADER_SIZE + _TAG_SIZE + 1:
            raise RowDecryptError(f"{where}: encrypted blob is too short")
        try:
            plaintext = self._decrypt(
                blob[1:_HEADER_SIZE] + start,
                blob[_HEADER_SIZE:],
                self._block_ad_prefix + start,
            )
        except InvalidTag:
            raise RowDecryptError(
                f"{where}: authentication failed (wrong key, dataset or row number, "
                "or the blob was altered)"
            ) from None
        if plaintext[0] not in BLOCK_FORMATS:
            raise RowDecryptError(f"{where}: unknown block encoding {plaintext[0]}")
        try:
            return block_rows(plaintext)
        except UnknownFormat as error:  # inside a compressed block
            raise RowDecryptError(f"{where}: unknown block encoding {error.args[0]}") from None
        except (ValueError, struct.error):  # UnicodeDecodeError is a ValueError
            raise RowDecryptError(f"{where}: decrypted block is malformed") from None

    def decrypt(self, row_number: int, blob: bytes | bytearray | memoryview) -> list[str]:
        """Decrypt a blob written by :meth:`encrypt` for the same dataset and row number.

        ``blob`` may be any bytes-like object (drivers often return ``memoryview``).

        Raises :class:`RowDecryptError` if the blob is malformed, has an unknown version,
        was altered, or belongs to another row number, dataset or data key. Raises
        ``ValueError`` for an out-of-range row number.
        """
        row_bytes = _row_bytes(row_number)
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
            return row_values(plaintext)
        except UnknownFormat:
            raise RowDecryptError(
                f"row {row_number}: unknown row encoding {plaintext[0]}"
            ) from None
        except (ValueError, struct.error):  # UnicodeDecodeError is a ValueError
            raise RowDecryptError(f"row {row_number}: decrypted row is malformed") from None
