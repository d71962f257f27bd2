"""Property tests of the security invariants not already covered in tests/crypto and
tests/datasets/test_export_format.py: rows bound to their place, file streams that cannot
be cut, reordered or altered unnoticed, and export neutralisation by its definition.
"""

from __future__ import annotations

import csv
import io
import json
import random
import uuid

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from csvault.crypto.keyring import new_data_key
from csvault.crypto.rows import RowCipher, RowDecryptError
from csvault.crypto.stream import (
    HEADER_SIZE,
    SEGMENT_SIZE,
    StreamDecryptError,
    StreamEncryptor,
    decrypt_stream,
)
from csvault.datasets.export import csv_lines, jsonl_lines, neutralise_cell

DATA_KEY = new_data_key()
DATASET = uuid.UUID("6f1d0c2e-8a43-4c55-9d1e-0b2a7c3e4f58")
TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20", "\u3000")


def formula_like(value: str) -> bool:
    """The documented rule, written independently: =, +, -, @ (or full-width) after
    spaces, or a tab or CR first; and not a plain number."""
    stripped = value.lstrip(" \u3000")
    starts = value[:1] in ("\t", "\r") or stripped[:1] in tuple("=+-@\uff1d\uff0b\uff0d\uff20")
    if not starts or not stripped:
        return starts
    try:
        is_number = (
            value == value.strip()
            and "_" not in value
            and value.lower() not in ("+inf", "-inf", "+nan", "-nan", "+infinity", "-infinity")
            and not any(c.isalpha() and c not in "eE" for c in value)
            and float(value) is not None
        )
    except ValueError:
        is_number = False
    return not is_number


SEGMENT_CT = SEGMENT_SIZE + 16

rows = st.lists(st.text(max_size=30), max_size=6)
row_numbers = st.integers(0, 2**64 - 1)
attempts = st.integers(0, 2**32 - 1)


# --- rows ---------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(values=rows, attempt=attempts, written_as=row_numbers, read_as=row_numbers)
def test_a_row_blob_only_decrypts_as_the_row_it_was_written_for(
    values: list[str], attempt: int, written_as: int, read_as: int
) -> None:
    """Swapping or moving stored rows is detected, whatever the attempt that wrote them."""
    cipher = RowCipher(DATA_KEY, DATASET, attempt)
    blob = cipher.encrypt(written_as, values)
    reader = RowCipher(DATA_KEY, DATASET, 0)  # the attempt is read from the blob
    if read_as == written_as:
        assert reader.decrypt(read_as, blob) == values
    else:
        with pytest.raises(RowDecryptError, match=f"row {read_as}"):
            reader.decrypt(read_as, blob)


@settings(max_examples=100, deadline=None)
@given(first=rows, second=rows, a=row_numbers, b=row_numbers)
def test_two_swapped_rows_both_fail(first: list[str], second: list[str], a: int, b: int) -> None:
    assume(a != b)
    cipher = RowCipher(DATA_KEY, DATASET, 1)
    blob_a, blob_b = cipher.encrypt(a, first), cipher.encrypt(b, second)
    for number, blob in ((a, blob_b), (b, blob_a)):
        with pytest.raises(RowDecryptError):
            cipher.decrypt(number, blob)


@settings(max_examples=50, deadline=None)
@given(values=rows, row=row_numbers, other=st.uuids())
def test_a_row_moved_to_another_dataset_under_the_same_data_key_fails(
    values: list[str], row: int, other: uuid.UUID
) -> None:
    assume(other != DATASET)
    blob = RowCipher(DATA_KEY, DATASET, 1).encrypt(row, values)
    with pytest.raises(RowDecryptError):
        RowCipher(DATA_KEY, other, 1).decrypt(row, blob)


@settings(max_examples=150, deadline=None)
@given(values=rows, data=st.data())
def test_any_corruption_of_a_row_blob_fails(values: list[str], data: st.DataObject) -> None:
    """Any non-empty XOR over any byte range, a cut anywhere, or bytes appended."""
    cipher = RowCipher(DATA_KEY, DATASET, 2)
    blob = cipher.encrypt(5, values)
    how = data.draw(st.sampled_from(["xor", "cut", "append"]), label="how")
    if how == "xor":
        start = data.draw(st.integers(0, len(blob) - 1), label="start")
        mask = data.draw(st.binary(min_size=1, max_size=len(blob) - start), label="mask")
        assume(any(mask))
        tampered = bytearray(blob)
        for i, byte in enumerate(mask):
            tampered[start + i] ^= byte
        bad = bytes(tampered)
    elif how == "cut":
        bad = blob[: data.draw(st.integers(0, len(blob) - 1), label="cut")]
    else:
        bad = blob + data.draw(st.binary(min_size=1, max_size=32), label="extra")
    with pytest.raises(RowDecryptError, match="row 5"):
        cipher.decrypt(5, bad)


# --- file streams ---------------------------------------------------------------


def encrypt(data: bytes) -> bytes:
    encryptor = StreamEncryptor(DATA_KEY, DATASET)
    return encryptor.update(data) + encryptor.finalize()


def decrypt(ciphertext: bytes, chunk: int = 50_000) -> bytes:
    chunks = (ciphertext[i : i + chunk] for i in range(0, len(ciphertext), chunk))
    return b"".join(decrypt_stream(DATA_KEY, DATASET, chunks))


def split(ciphertext: bytes) -> tuple[bytes, list[bytes]]:
    body = ciphertext[HEADER_SIZE:]
    return ciphertext[:HEADER_SIZE], [
        body[i : i + SEGMENT_CT] for i in range(0, len(body), SEGMENT_CT)
    ]


# Sizes around the segment boundaries, up to four segments.
sizes = st.one_of(
    st.integers(0, 4 * SEGMENT_SIZE),
    st.sampled_from([0, 1, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE]),
)


def plaintext(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@settings(max_examples=40, deadline=None)
@given(size=sizes, seed=st.integers(0, 1000), data=st.data())
def test_a_stream_cut_anywhere_fails(size: int, seed: int, data: st.DataObject) -> None:
    ciphertext = encrypt(plaintext(size, seed))
    cut = data.draw(st.integers(0, len(ciphertext) - 1), label="cut")
    with pytest.raises(StreamDecryptError):
        decrypt(ciphertext[:cut])


@settings(max_examples=40, deadline=None)
@given(size=sizes, seed=st.integers(0, 1000), data=st.data())
def test_a_stream_with_any_bit_flipped_fails(size: int, seed: int, data: st.DataObject) -> None:
    ciphertext = bytearray(encrypt(plaintext(size, seed)))
    bit = data.draw(st.integers(0, len(ciphertext) * 8 - 1), label="bit")
    ciphertext[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(StreamDecryptError):
        decrypt(bytes(ciphertext))


@settings(max_examples=40, deadline=None)
@given(
    segments=st.integers(2, 5),
    data=st.data(),
)
def test_segments_reordered_dropped_or_repeated_fail(segments: int, data: st.DataObject) -> None:
    source = plaintext((segments - 1) * SEGMENT_SIZE + 100, segments)
    header, parts = split(encrypt(source))
    assert len(parts) == segments
    order = data.draw(
        st.lists(st.integers(0, segments - 1), min_size=1, max_size=segments + 1), label="order"
    )
    assume(order != list(range(segments)))
    with pytest.raises(StreamDecryptError):
        decrypt(header + b"".join(parts[i] for i in order))


@settings(max_examples=30, deadline=None)
@given(size=sizes, seed=st.integers(0, 1000), chunk=st.integers(1, 3 * SEGMENT_CT))
def test_a_stream_round_trips_whatever_the_read_size(size: int, seed: int, chunk: int) -> None:
    source = plaintext(size, seed)
    assert decrypt(encrypt(source), chunk=chunk) == source


# --- export neutralisation -----------------------------------------------------------


cells = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from([*TRIGGERS, "'", '"', ",", "\n", "a", " "]), max_size=6),
    st.text(alphabet=st.sampled_from([*"+-.eE0123456789 ", "a"]), max_size=8),
)


@given(value=cells)
def test_neutralise_cell_is_exactly_its_definition(value: str) -> None:
    expected = "'" + value if formula_like(value) else value
    assert neutralise_cell(value) == expected
    # Idempotent: a neutralised cell never starts a formula, so it is not prefixed twice.
    assert neutralise_cell(expected) == expected
    assert not formula_like(neutralise_cell(value))


@given(row=st.lists(cells, min_size=1, max_size=5))
def test_csv_export_round_trips_to_the_neutralised_values_and_jsonl_to_the_raw(
    row: list[str],
) -> None:
    columns = [f"c{i}" for i in range(len(row))]
    text = "".join(csv_lines(columns, [row]))
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed == [columns, [neutralise_cell(v) for v in row]]
    (line,) = "".join(jsonl_lines(columns, [(1, row)])).splitlines()
    assert json.loads(line) == {"row": 1, "data": dict(zip(columns, row, strict=True))}
