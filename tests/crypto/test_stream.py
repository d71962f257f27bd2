"""Segmented file encryption: round trips at any chunking, and every way to break a file."""

from __future__ import annotations

import io
import random
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csvault.crypto.keyring import new_data_key
from csvault.crypto.stream import (
    HEADER_SIZE,
    SEGMENT_SIZE,
    StreamDecryptError,
    StreamEncryptor,
    decrypt_stream,
    encrypted_size,
    open_decrypted,
)

DATA_KEY = new_data_key()
DATASET = uuid.UUID("0b7f3c6e-2f4d-4c1b-8e9a-5d6c7b8a9f10")
SEGMENT_CT = SEGMENT_SIZE + 16
BOUNDARY_SIZES = [0, 1, 65535, 65536, 65537, 131071, 131072, 131073]


def chunked(data: bytes, sizes: Iterator[int]) -> Iterator[bytes]:
    position = 0
    while position < len(data):
        size = next(sizes)
        yield data[position : position + size]
        position += size


def random_sizes(rng: random.Random, largest: int) -> Iterator[int]:
    while True:
        yield rng.choice([0, 1, rng.randint(1, 64), rng.randint(1, largest)])


def encrypt(data: bytes, key: bytes = DATA_KEY, dataset: uuid.UUID = DATASET) -> bytes:
    encryptor = StreamEncryptor(key, dataset)
    return encryptor.update(data) + encryptor.finalize()


def decrypt(
    ciphertext: bytes, key: bytes = DATA_KEY, dataset: uuid.UUID = DATASET, chunk: int = 1 << 20
) -> bytes:
    chunks = (ciphertext[i : i + chunk] for i in range(0, len(ciphertext), chunk))
    return b"".join(decrypt_stream(key, dataset, chunks))


def segments_of(ciphertext: bytes) -> tuple[bytes, list[bytes]]:
    body = ciphertext[HEADER_SIZE:]
    return ciphertext[:HEADER_SIZE], [
        body[i : i + SEGMENT_CT] for i in range(0, len(body), SEGMENT_CT)
    ]


@settings(max_examples=100, deadline=None)
@given(
    size=st.one_of(st.sampled_from(BOUNDARY_SIZES), st.integers(0, 300_000)),
    seed=st.integers(0, 2**32),
)
def test_it_round_trips_any_bytes_fed_in_random_chunks(size: int, seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(size)
    encryptor = StreamEncryptor(DATA_KEY, DATASET)
    ciphertext = b"".join(
        [encryptor.update(part) for part in chunked(data, random_sizes(rng, 150_000))]
        + [encryptor.finalize()]
    )
    assert len(ciphertext) == encrypted_size(size)
    plaintext = b"".join(
        decrypt_stream(DATA_KEY, DATASET, chunked(ciphertext, random_sizes(rng, 150_000)))
    )
    assert plaintext == data


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_its_output_size_matches_encrypted_size(size: int) -> None:
    assert len(encrypt(bytes(size))) == encrypted_size(size)


def test_an_empty_file_is_a_header_and_one_empty_final_segment() -> None:
    ciphertext = StreamEncryptor(DATA_KEY, DATASET).finalize()
    assert len(ciphertext) == HEADER_SIZE + 16 == encrypted_size(0)
    assert ciphertext[:5] == b"CSVF\x01"
    assert decrypt(ciphertext) == b""


def test_it_decrypts_from_one_byte_chunks() -> None:
    data = random.Random(1).randbytes(SEGMENT_SIZE + 100)
    ciphertext = encrypt(data)
    assert decrypt(ciphertext, chunk=1) == data


def test_it_yields_whole_segments() -> None:
    data = bytes(2 * SEGMENT_SIZE + 10)
    sizes = [len(part) for part in decrypt_stream(DATA_KEY, DATASET, [encrypt(data)])]
    assert sizes == [SEGMENT_SIZE, SEGMENT_SIZE, 10]


def test_it_holds_back_at_most_one_segment_of_plaintext() -> None:
    encryptor = StreamEncryptor(DATA_KEY, DATASET)
    out = encryptor.update(bytes(10 * SEGMENT_SIZE))
    # Nine segments go out at once; the tenth waits to learn whether it is the last.
    assert len(out) == HEADER_SIZE + 9 * SEGMENT_CT
    assert len(encryptor.update(b"x")) == SEGMENT_CT
    assert len(encryptor.finalize()) == 1 + 16


def test_it_decrypts_lazily_without_reading_the_whole_file_first() -> None:
    ciphertext = encrypt(bytes(5 * SEGMENT_SIZE))
    consumed = 0

    def chunks() -> Iterator[bytes]:
        nonlocal consumed
        for i in range(0, len(ciphertext), 4096):
            consumed += 1
            yield ciphertext[i : i + 4096]

    first = next(decrypt_stream(DATA_KEY, DATASET, chunks()))
    assert len(first) == SEGMENT_SIZE
    assert consumed * 4096 < 2 * SEGMENT_CT + 4096


def test_it_accepts_bytearray_and_memoryview_input() -> None:
    data = bytes(range(256)) * 600
    encryptor = StreamEncryptor(DATA_KEY, DATASET)
    ciphertext = (
        encryptor.update(bytearray(data[:1000]))
        + encryptor.update(memoryview(data)[1000:])
        + encryptor.finalize()
    )
    view = memoryview(ciphertext)
    assert b"".join(decrypt_stream(DATA_KEY, DATASET, [view[:7], view[7:]])) == data


def test_it_uses_a_fresh_nonce_prefix_for_every_file() -> None:
    data = b"same,plaintext\n" * 10
    first, second = encrypt(data), encrypt(data)
    assert first[5:HEADER_SIZE] != second[5:HEADER_SIZE]
    assert first[HEADER_SIZE:] != second[HEADER_SIZE:]


def test_it_does_not_leak_plaintext() -> None:
    assert b"needle" not in encrypt(b"hay,needle,hay\n" * 1000)


def test_open_decrypted_reads_from_a_file_object() -> None:
    data = random.Random(2).randbytes(3 * SEGMENT_SIZE + 5)
    source = io.BytesIO(encrypt(data))
    assert b"".join(open_decrypted(DATA_KEY, DATASET, source, chunk_size=1000)) == data


def test_open_decrypted_rejects_a_non_positive_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        open_decrypted(DATA_KEY, DATASET, io.BytesIO(), chunk_size=0)


def test_it_raises_for_a_bad_data_key_at_call_time_not_lazily() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        decrypt_stream(b"short", DATASET, [])
    with pytest.raises(ValueError, match="32 bytes"):
        StreamEncryptor(b"short", DATASET)


def test_it_refuses_updates_after_finalize() -> None:
    encryptor = StreamEncryptor(DATA_KEY, DATASET)
    encryptor.finalize()
    with pytest.raises(ValueError, match="after finalize"):
        encryptor.update(b"x")
    with pytest.raises(ValueError, match="twice"):
        encryptor.finalize()


# --- tampering ---------------------------------------------------------------

FOUR_SEGMENTS = random.Random(3).randbytes(3 * SEGMENT_SIZE + 1234)
FOUR_SEGMENTS_CT = encrypt(FOUR_SEGMENTS)


@pytest.mark.parametrize("segments_kept", [0, 1, 2, 3])
def test_it_rejects_a_file_truncated_at_a_segment_boundary(segments_kept: int) -> None:
    truncated = FOUR_SEGMENTS_CT[: HEADER_SIZE + segments_kept * SEGMENT_CT]
    with pytest.raises(StreamDecryptError, match=r"truncated|final segment"):
        decrypt(truncated)


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(0, len(FOUR_SEGMENTS_CT) - 1))
def test_it_rejects_a_file_truncated_anywhere(cut: int) -> None:
    with pytest.raises(StreamDecryptError):
        decrypt(FOUR_SEGMENTS_CT[:cut])


def test_it_rejects_a_truncated_header() -> None:
    with pytest.raises(StreamDecryptError, match="incomplete header"):
        decrypt(FOUR_SEGMENTS_CT[: HEADER_SIZE - 1], chunk=1)


@pytest.mark.parametrize("extra", [b"\x00", b"x" * 16, b"x" * 5000])
def test_it_rejects_data_after_the_final_segment(extra: bytes) -> None:
    with pytest.raises(StreamDecryptError, match="segment 3"):
        decrypt(FOUR_SEGMENTS_CT + extra)


@pytest.mark.parametrize("size", [10, SEGMENT_SIZE])
def test_it_rejects_a_final_segment_repeated_at_the_end(size: int) -> None:
    header, segments = segments_of(encrypt(bytes(size)))
    assert len(segments) == 1
    with pytest.raises(StreamDecryptError, match="segment 0 failed"):
        decrypt(header + segments[0] + segments[0])


@pytest.mark.parametrize(("first", "second"), [(0, 1), (1, 2), (0, 2)])
def test_it_rejects_swapped_segments(first: int, second: int) -> None:
    header, segments = segments_of(FOUR_SEGMENTS_CT)
    segments[first], segments[second] = segments[second], segments[first]
    with pytest.raises(StreamDecryptError, match=f"segment {first} failed"):
        decrypt(header + b"".join(segments))


def test_it_rejects_a_dropped_middle_segment() -> None:
    header, segments = segments_of(FOUR_SEGMENTS_CT)
    del segments[1]
    with pytest.raises(StreamDecryptError, match="segment 1 failed"):
        decrypt(header + b"".join(segments))


def test_it_rejects_a_segment_spliced_in_from_another_file() -> None:
    header, segments = segments_of(FOUR_SEGMENTS_CT)
    _, other_segments = segments_of(encrypt(FOUR_SEGMENTS))
    segments[1] = other_segments[1]
    with pytest.raises(StreamDecryptError, match="segment 1 failed"):
        decrypt(header + b"".join(segments))


def test_it_rejects_a_file_of_another_dataset() -> None:
    with pytest.raises(StreamDecryptError, match="segment 0 failed"):
        decrypt(FOUR_SEGMENTS_CT, dataset=uuid.uuid4())


def test_it_rejects_a_file_under_another_data_key() -> None:
    with pytest.raises(StreamDecryptError, match="segment 0 failed"):
        decrypt(FOUR_SEGMENTS_CT, key=new_data_key())


def test_it_rejects_a_bad_magic() -> None:
    with pytest.raises(StreamDecryptError, match="bad magic"):
        decrypt(b"PK\x03\x04" + FOUR_SEGMENTS_CT[4:])


def test_it_rejects_an_unknown_version() -> None:
    with pytest.raises(StreamDecryptError, match="unsupported encrypted file version 2"):
        decrypt(FOUR_SEGMENTS_CT[:4] + b"\x02" + FOUR_SEGMENTS_CT[5:])


TWO_SEGMENTS_CT = encrypt(random.Random(4).randbytes(SEGMENT_SIZE + 300))


@settings(max_examples=60, deadline=None)
@given(bit=st.integers(0, len(TWO_SEGMENTS_CT) * 8 - 1))
def test_it_rejects_any_single_flipped_bit(bit: int) -> None:
    tampered = bytearray(TWO_SEGMENTS_CT)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(StreamDecryptError):
        decrypt(bytes(tampered))


@pytest.mark.parametrize("size", [-1, -SEGMENT_SIZE])
def test_encrypted_size_rejects_negative_sizes(size: int) -> None:
    with pytest.raises(ValueError, match="negative"):
        encrypted_size(size)
