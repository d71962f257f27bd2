"""Segmented AEAD for whole files (the STREAM construction, as in Tink's streaming AEAD).

An uploaded CSV file is encrypted as it arrives and is never written to disk in clear.

Format::

    header:   b"CSVF" | version (1 byte, = 1) | nonce prefix (7 random bytes)
    segments: AES-256-GCM(segment plaintext) || tag, one after another

Every segment holds :data:`SEGMENT_SIZE` bytes of plaintext except the last, which holds
0 to :data:`SEGMENT_SIZE` bytes; every file, even an empty one, ends with exactly one final
segment. Segment ``i`` uses the nonce ``prefix (7) || i (4 bytes BE) || final flag (1)``
and the associated data ``dataset_id.bytes``. The AES key is derived from the dataset's
data key with HKDF-SHA256 (``info=b"csvault/file/v1"``, ``salt=dataset_id.bytes``), so it
is never the key used for rows.

Because the segment index is in the nonce, reordered or dropped segments fail to
authenticate; because the final flag is in the nonce, a stream cut at a segment boundary
(its last segment was not encrypted as final) or extended after its final segment (the
former final segment is now read as non-final) fails too. Within one file the nonces are
distinct by construction; across files under the same data key they differ by the random
7-byte prefix (a dataset normally has one file, far below the 2**28 files at which a
prefix collision would become plausible).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from csvault.crypto.keyring import derive_subkey

__all__ = [
    "HEADER_SIZE",
    "SEGMENT_SIZE",
    "SegmentSealer",
    "StreamDecryptError",
    "StreamEncryptor",
    "decrypt_stream",
    "encrypted_size",
    "open_decrypted",
]

SEGMENT_SIZE = 64 * 1024
MAGIC = b"CSVF"
STREAM_FORMAT_VERSION = 1
_PREFIX_SIZE = 7
#: Bytes before the first segment: magic, version byte, nonce prefix.
HEADER_SIZE = len(MAGIC) + 1 + _PREFIX_SIZE
_TAG_SIZE = 16
_SEGMENT_CT_SIZE = SEGMENT_SIZE + _TAG_SIZE
_MAX_SEGMENTS = 2**32  # the segment index is a 4-byte counter
_KDF_INFO = b"csvault/file/v1"
_NOT_FINAL = b"\x00"
_FINAL = b"\x01"


#: Any contiguous byte buffer accepted as input.
BytesLike = bytes | bytearray | memoryview


class StreamDecryptError(Exception):
    """An encrypted file is not in csvault's format, was altered, truncated or extended,
    or belongs to another dataset or data key.

    Plaintext already yielded by :func:`decrypt_stream` before this error must be
    discarded: only a stream that ends without error is authentic as a whole.
    """


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def encrypted_size(plaintext_size: int) -> int:
    """Return the size of the encrypted file for ``plaintext_size`` bytes of plaintext.

    Header plus one 16-byte tag per segment; an empty file still has one (final) segment.
    """
    if plaintext_size < 0:
        raise ValueError("plaintext size cannot be negative")
    segments = max(1, -(-plaintext_size // SEGMENT_SIZE))
    return HEADER_SIZE + plaintext_size + segments * _TAG_SIZE


class SegmentSealer:
    """Seals the segments of one file one at a time, in any request: what a resumable
    upload (whose total size is known from the start) needs instead of
    :class:`StreamEncryptor`. The caller keeps ``prefix`` (from :meth:`new_prefix`)
    between requests, writes :meth:`header` first, and seals segment ``index`` with
    ``final`` set exactly for the last one (``index == segment_count(size) - 1``).
    The result is byte for byte the format :class:`StreamEncryptor` writes.
    """

    def __init__(self, data_key: bytes, dataset_id: uuid.UUID, prefix: bytes) -> None:
        if len(prefix) != _PREFIX_SIZE:
            raise ValueError(f"the nonce prefix is {_PREFIX_SIZE} bytes")
        self._aead = AESGCM(derive_subkey(data_key, dataset_id, _KDF_INFO))
        self._associated_data = dataset_id.bytes
        self.prefix = prefix

    @staticmethod
    def new_prefix() -> bytes:
        return os.urandom(_PREFIX_SIZE)

    @staticmethod
    def segment_count(plaintext_size: int) -> int:
        return max(1, -(-plaintext_size // SEGMENT_SIZE))

    def header(self) -> bytes:
        return MAGIC + bytes([STREAM_FORMAT_VERSION]) + self.prefix

    def seal(self, index: int, plaintext: BytesLike, final: bool) -> bytes:
        if not 0 <= index < _MAX_SEGMENTS:
            raise ValueError("file too large: the segment counter would overflow")
        if len(plaintext) > SEGMENT_SIZE or (not final and len(plaintext) != SEGMENT_SIZE):
            raise ValueError("only the final segment may be shorter than SEGMENT_SIZE")
        nonce = self.prefix + index.to_bytes(4, "big") + (_FINAL if final else _NOT_FINAL)
        return self._aead.encrypt(nonce, plaintext, self._associated_data)


class StreamEncryptor:
    """Encrypts one file incrementally; feed it with :meth:`update`, end with :meth:`finalize`.

    The concatenation of everything returned by :meth:`update` and :meth:`finalize` is the
    encrypted file; the first non-empty return value starts with the header. At most one
    segment of plaintext is buffered between calls: a complete segment is held back until
    more data arrives, because only then is it known not to be the final one.

    Raises ``ValueError`` if ``data_key`` is not 32 bytes.
    """

    def __init__(self, data_key: bytes, dataset_id: uuid.UUID) -> None:
        self._aead = AESGCM(derive_subkey(data_key, dataset_id, _KDF_INFO))
        self._associated_data = dataset_id.bytes
        self._prefix = os.urandom(_PREFIX_SIZE)
        self._header: bytes | None = MAGIC + bytes([STREAM_FORMAT_VERSION]) + self._prefix
        self._index = 0
        self._pending = bytearray()
        self._finished = False

    def _seal(self, plaintext: BytesLike, final: bool) -> bytes:
        if self._index >= _MAX_SEGMENTS:
            raise ValueError("file too large: the segment counter would overflow")
        nonce = self._prefix + self._index.to_bytes(4, "big") + (_FINAL if final else _NOT_FINAL)
        self._index += 1
        return self._aead.encrypt(nonce, plaintext, self._associated_data)

    def _take_header(self) -> bytes:
        header, self._header = self._header, None
        return header or b""

    def update(self, data: BytesLike) -> bytes:
        """Add plaintext; return the ciphertext that can be emitted so far (maybe ``b""``).

        Raises ``ValueError`` after :meth:`finalize`.
        """
        if self._finished:
            raise ValueError("update() called after finalize()")
        view = memoryview(data).cast("B")
        size = len(view)
        if not size:
            return b""
        out = [self._take_header()]
        pending = self._pending
        position = 0
        if pending:
            position = SEGMENT_SIZE - len(pending)
            if size <= position:
                pending += view
                return b"".join(out)
            # More data follows the completed segment, so it is not the final one.
            pending += view[:position]
            out.append(self._seal(pending, final=False))
            pending.clear()
        # Full segments are encrypted straight from the caller's buffer; only the
        # remainder (at most one segment, possibly a complete one) is copied and held.
        while size - position > SEGMENT_SIZE:
            out.append(self._seal(view[position : position + SEGMENT_SIZE], final=False))
            position += SEGMENT_SIZE
        pending += view[position:]
        return b"".join(out)

    def finalize(self) -> bytes:
        """Encrypt the buffered plaintext as the final segment and return the rest.

        Raises ``ValueError`` if called twice.
        """
        if self._finished:
            raise ValueError("finalize() called twice")
        self._finished = True
        out = self._take_header() + self._seal(self._pending, final=True)
        self._pending = bytearray()
        return out


def decrypt_stream(
    data_key: bytes, dataset_id: uuid.UUID, chunks: Iterable[BytesLike]
) -> Iterator[bytes]:
    """Decrypt an encrypted file given as ciphertext chunks of any sizes.

    Yields plaintext one segment at a time (empty segments are skipped). Memory use is
    bounded by the chunk size plus one segment. Raises :class:`StreamDecryptError` on a
    bad magic or version, a segment that fails authentication (tampering, reordering,
    wrong key or dataset), or truncation or trailing data; plaintext yielded before the
    error must then be discarded. Raises ``ValueError`` at once if ``data_key`` is not
    32 bytes.
    """
    # Derived eagerly (this is not a generator function) so key errors surface at the call.
    aead = AESGCM(derive_subkey(data_key, dataset_id, _KDF_INFO))
    return _decrypt_segments(aead, dataset_id.bytes, chunks)


def _decrypt_segments(
    aead: AESGCM, associated_data: bytes, chunks: Iterable[BytesLike]
) -> Iterator[bytes]:
    buffer = bytearray()
    prefix: bytes | None = None
    index = 0

    def open_segment(segment: BytesLike, final: bool) -> bytes:
        assert prefix is not None
        if index >= _MAX_SEGMENTS:
            raise StreamDecryptError("encrypted file has too many segments")
        nonce = prefix + index.to_bytes(4, "big") + (_FINAL if final else _NOT_FINAL)
        try:
            return aead.decrypt(nonce, segment, associated_data)
        except InvalidTag:
            if final:
                raise StreamDecryptError(
                    f"final segment {index} failed authentication: the file is truncated, "
                    "has trailing data, was altered, or belongs to another dataset"
                ) from None
            raise StreamDecryptError(
                f"segment {index} failed authentication: the file was altered or reordered, "
                "or belongs to another dataset"
            ) from None

    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        size = len(view)
        position = 0
        if prefix is None:
            position = min(HEADER_SIZE - len(buffer), size)
            buffer += view[:position]
            if len(buffer) < HEADER_SIZE:
                continue
            if buffer[: len(MAGIC)] != MAGIC:
                raise StreamDecryptError("not a csvault encrypted file (bad magic)")
            version = buffer[len(MAGIC)]
            if version != STREAM_FORMAT_VERSION:
                raise StreamDecryptError(f"unsupported encrypted file version {version}")
            prefix = bytes(buffer[len(MAGIC) + 1 :])
            buffer.clear()
        # A complete segment is known to be non-final only once at least one more byte
        # follows it, so the last (possibly complete) segment stays buffered until the end.
        if buffer:
            missing = _SEGMENT_CT_SIZE - len(buffer)
            if size - position <= missing:
                buffer += view[position:]
                continue
            buffer += view[position : position + missing]
            position += missing
            plaintext = open_segment(buffer, False)
            index += 1
            buffer.clear()
            yield plaintext
        # Whole segments are decrypted straight out of the caller's chunk; only a
        # remainder of at most one segment is copied into the buffer.
        while size - position > _SEGMENT_CT_SIZE:
            plaintext = open_segment(view[position : position + _SEGMENT_CT_SIZE], False)
            index += 1
            position += _SEGMENT_CT_SIZE
            yield plaintext
        buffer += view[position:]

    if prefix is None:
        raise StreamDecryptError("encrypted file is truncated: incomplete header")
    if len(buffer) < _TAG_SIZE:
        raise StreamDecryptError("encrypted file is truncated: the final segment is missing")
    plaintext = open_segment(buffer, True)
    if plaintext:
        yield plaintext


def open_decrypted(
    data_key: bytes, dataset_id: uuid.UUID, fileobj: _Readable, chunk_size: int = 1 << 20
) -> Iterator[bytes]:
    """Decrypt an encrypted file read from a binary file object, ``chunk_size`` at a time.

    Same behaviour and errors as :func:`decrypt_stream`. The file object is not closed.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    return decrypt_stream(data_key, dataset_id, iter(partial(fileobj.read, chunk_size), b""))


# --- a resumable upload's last, incomplete segment ----------------------------------------

_TAIL_KDF_INFO = b"csvault/upload-tail/v1"
_TAIL_NONCE_SIZE = 12


def seal_tail(data_key: bytes, dataset_id: uuid.UUID, offset: int, plaintext: BytesLike) -> bytes:
    """Encrypt the bytes of a resumable upload that do not yet fill a segment (kept in the
    database between requests). Bound to the dataset and to ``offset``, where they start."""
    aead = AESGCM(derive_subkey(data_key, dataset_id, _TAIL_KDF_INFO))
    nonce = os.urandom(_TAIL_NONCE_SIZE)
    return nonce + aead.encrypt(nonce, bytes(plaintext), _tail_ad(dataset_id, offset))


def open_tail(data_key: bytes, dataset_id: uuid.UUID, offset: int, sealed: bytes) -> bytes:
    """The plaintext of :func:`seal_tail`; StreamDecryptError if it was altered or moved."""
    aead = AESGCM(derive_subkey(data_key, dataset_id, _TAIL_KDF_INFO))
    nonce, ciphertext = sealed[:_TAIL_NONCE_SIZE], sealed[_TAIL_NONCE_SIZE:]
    try:
        return aead.decrypt(nonce, ciphertext, _tail_ad(dataset_id, offset))
    except InvalidTag:
        raise StreamDecryptError("an upload's kept bytes failed authentication") from None


def _tail_ad(dataset_id: uuid.UUID, offset: int) -> bytes:
    return dataset_id.bytes + offset.to_bytes(8, "big")
