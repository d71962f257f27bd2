"""Row cipher: exact round trips, binding to dataset and row number, tamper detection."""

from __future__ import annotations

import csv
import io
import random
import uuid
from itertools import accumulate

import lz4.block
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csvault.crypto.keyring import new_data_key
from csvault.crypto.rows import RowCipher, RowDecryptError
from csvault.csvio.blocks import (
    BLOCK_MAX_STORED_BYTES,
    BLOCK_TARGET_BYTES,
    UnknownFormat,
    block_rows,
    grid_block,
    grid_row_count,
    split_grid,
)
from csvault.csvio.fastcsv import FAST_AVAILABLE, FastBlocks
from csvault.csvio.limits import CsvLimits

DATA_KEY = new_data_key()
DATASET = uuid.UUID("4a3c1a8e-6b55-4f1e-9d0a-3f8a3c9e2b11")
ROW = ["12345", "Jane Doe", "jane.doe@example.com", "2024-01-15", "42.50", "Springfield"]


@pytest.fixture
def cipher() -> RowCipher:
    return RowCipher(DATA_KEY, DATASET, attempt=3)


@pytest.mark.parametrize(
    "values",
    [
        [],
        [""],
        ["", ""],
        ["", "", ""],
        ["\x00"],
        ["a\x00b", "", "\x00\x00"],
        ["\x00", ""],
        ["line\nbreak", "cr\r\nlf", "tab\t", '"quoted, with comma"'],
        ["😀", "中文", "\U0010ffff", "é"],
        ["x" * 100_000, ""],
        ROW,
    ],
)
def test_it_round_trips_edge_case_rows_exactly(cipher: RowCipher, values: list[str]) -> None:
    assert cipher.decrypt(7, cipher.encrypt(7, values)) == values


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.text()), row_number=st.integers(0, 2**64 - 1))
def test_it_round_trips_any_list_of_text(values: list[str], row_number: int) -> None:
    cipher = RowCipher(DATA_KEY, DATASET, attempt=1)
    assert cipher.decrypt(row_number, cipher.encrypt(row_number, values)) == values


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.text(max_size=20), max_size=5), data=st.data())
def test_it_rejects_any_single_flipped_bit(values: list[str], data: st.DataObject) -> None:
    cipher = RowCipher(DATA_KEY, DATASET, attempt=1)
    blob = bytearray(cipher.encrypt(11, values))
    bit = data.draw(st.integers(0, len(blob) * 8 - 1), label="bit")
    blob[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(RowDecryptError, match="row 11"):
        cipher.decrypt(11, bytes(blob))


def test_it_accepts_blobs_as_memoryview_or_bytearray(cipher: RowCipher) -> None:
    blob = cipher.encrypt(9, ROW)
    assert cipher.decrypt(9, memoryview(blob)) == ROW
    assert cipher.decrypt(9, bytearray(blob)) == ROW


def test_it_rejects_a_row_moved_to_another_row_number(cipher: RowCipher) -> None:
    blob = cipher.encrypt(1, ROW)
    with pytest.raises(RowDecryptError, match="row 2: authentication failed"):
        cipher.decrypt(2, blob)


def test_it_rejects_a_row_moved_to_another_dataset() -> None:
    blob = RowCipher(DATA_KEY, DATASET).encrypt(1, ROW)
    with pytest.raises(RowDecryptError):
        RowCipher(DATA_KEY, uuid.uuid4()).decrypt(1, blob)


def test_it_rejects_a_row_under_another_data_key() -> None:
    blob = RowCipher(DATA_KEY, DATASET).encrypt(1, ROW)
    with pytest.raises(RowDecryptError):
        RowCipher(new_data_key(), DATASET).decrypt(1, blob)


def test_it_decrypts_rows_of_any_attempt_without_being_told_the_attempt() -> None:
    blob = RowCipher(DATA_KEY, DATASET, attempt=41).encrypt(5, ROW)
    assert RowCipher(DATA_KEY, DATASET).decrypt(5, blob) == ROW


def test_it_stores_the_version_and_attempt_in_the_blob_prefix() -> None:
    blob = RowCipher(DATA_KEY, DATASET, attempt=0x01020304).encrypt(5, ROW)
    assert blob[:5] == b"\x01\x01\x02\x03\x04"


def test_it_gives_different_ciphertexts_for_the_same_row_in_different_attempts() -> None:
    first = RowCipher(DATA_KEY, DATASET, attempt=1).encrypt(5, ROW)
    second = RowCipher(DATA_KEY, DATASET, attempt=2).encrypt(5, ROW)
    assert first[5:] != second[5:]


def test_it_is_deterministic_for_the_same_attempt_row_and_values(cipher: RowCipher) -> None:
    # Documents why re-encrypting identical contents in one attempt is harmless.
    assert cipher.encrypt(5, ROW) == cipher.encrypt(5, ROW)


def test_it_does_not_leak_plaintext_into_the_blob(cipher: RowCipher) -> None:
    blob = cipher.encrypt(5, ["needle-in-the-blob"])
    assert b"needle" not in blob


def test_it_rejects_an_unknown_blob_version(cipher: RowCipher) -> None:
    blob = b"\x02" + cipher.encrypt(5, ROW)[1:]
    with pytest.raises(RowDecryptError, match="unsupported row format version 2"):
        cipher.decrypt(5, blob)


@pytest.mark.parametrize("length", [0, 1, 5, 21])
def test_it_rejects_a_truncated_blob(cipher: RowCipher, length: int) -> None:
    blob = cipher.encrypt(5, [""])
    assert len(blob) == 22
    with pytest.raises(RowDecryptError, match="row 5"):
        cipher.decrypt(5, blob[:length])


def test_its_errors_never_contain_plaintext(cipher: RowCipher) -> None:
    blob = cipher.encrypt(5, ["top-secret-value"])
    with pytest.raises(RowDecryptError) as excinfo:
        cipher.decrypt(6, blob)
    assert "top-secret" not in str(excinfo.value)
    assert excinfo.value.__cause__ is None


@pytest.mark.parametrize("row_number", [-1, 2**64])
def test_it_rejects_row_numbers_outside_64_bits(cipher: RowCipher, row_number: int) -> None:
    with pytest.raises(ValueError, match="row number"):
        cipher.encrypt(row_number, ROW)
    with pytest.raises(ValueError, match="row number"):
        cipher.decrypt(row_number, cipher.encrypt(0, ROW))


@pytest.mark.parametrize("attempt", [-1, 2**32])
def test_it_rejects_attempts_outside_32_bits(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt"):
        RowCipher(DATA_KEY, DATASET, attempt=attempt)


def test_it_rejects_a_data_key_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        RowCipher(b"k" * 16, DATASET)


def test_it_refuses_lone_surrogates_which_utf8_cannot_encode(cipher: RowCipher) -> None:
    with pytest.raises(UnicodeEncodeError):
        cipher.encrypt(1, ["\ud800"])


# --- blocks: seal_blocks / decrypt_block ---

_VALUES = st.lists(st.text(max_size=6), max_size=4)  # includes [], "", NUL, non-BMP


def _open_blocks(cipher: RowCipher, sealed: tuple[bytes, range, list[bytes]]) -> list[list[str]]:
    prefix, starts, ciphertexts = sealed
    rows: list[list[str]] = []
    for start, ciphertext in zip(starts, ciphertexts, strict=True):
        assert start == (starts[0] if not rows else starts[0] + len(rows))  # contiguous
        rows.extend(cipher.decrypt_block(start, prefix + ciphertext))
    return rows


@settings(max_examples=300, deadline=None)
@given(
    rows=st.one_of(
        st.lists(_VALUES, max_size=40),  # any shapes: the row-list format
        st.integers(1, 5).flatmap(  # one width, maybe a NUL: the grid format (or not)
            lambda w: st.lists(st.lists(st.text(max_size=6), min_size=w, max_size=w), max_size=40)
        ),
    ),
    first=st.one_of(st.integers(0, 1000), st.just(2**64 - 41)),
    attempt=st.integers(0, 2**32 - 1),
    max_rows=st.integers(1, 64),
    target=st.integers(1, 5000),
    compress=st.booleans(),
)
def test_blocks_give_back_exactly_the_rows_sealed(
    rows: list[list[str]], first: int, attempt: int, max_rows: int, target: int, compress: bool
) -> None:
    cipher = RowCipher(DATA_KEY, DATASET, attempt=attempt, compress=compress)
    sealed = cipher.seal_blocks(first, rows, max_rows=max_rows, target_bytes=target)
    _, starts, ciphertexts = sealed
    assert len(starts) == len(ciphertexts)
    if rows:
        assert starts[0] == first
        assert starts.step <= max_rows
    assert _open_blocks(cipher, sealed) == rows
    # Any cipher of the dataset reads them: the attempt comes from the blob.
    assert _open_blocks(RowCipher(DATA_KEY, DATASET), sealed) == rows


def test_blocks_aim_at_the_target_size(cipher: RowCipher) -> None:
    _, starts, ciphertexts = cipher.seal_blocks(1, [ROW] * 1000)
    # 64 characters a row and its separator: 59 rows, under 3,840 bytes
    assert starts.step == BLOCK_TARGET_BYTES // (len("\x00".join(ROW)) + 1)
    assert all(3000 < len(c) < 4000 for c in ciphertexts[:-1])
    _, starts, _ = cipher.seal_blocks(1, [["x" * 10_000]] * 3)
    assert list(starts) == [1, 2, 3]  # a big row is a block of its own
    _, starts, _ = cipher.seal_blocks(1, [["a"]] * 1000)
    assert starts.step == 64  # BLOCK_MAX_ROWS


# A page is 8,192 bytes: a 24-byte header, then a 4-byte line pointer and a MAXALIGNed
# tuple per row. A ProcessedData tuple is 52 bytes (tuple header 24, dataset id 16, row
# number 8, varlena length 4) before its blob.
PAGE_ROOM_FOR_TWO = (8192 - 24) // 2 - 4  # 4,080: the largest tuple two of which fit
TUPLE_OVERHEAD = 52


@pytest.mark.skipif(not FAST_AVAILABLE, reason="C fast path not built (CI fails on this)")
@pytest.mark.parametrize("row_bytes", [80, 116, 150])
def test_blocks_of_rows_up_to_150_bytes_fit_two_to_a_page(cipher: RowCipher, row_bytes) -> None:
    # The C parser closes a block at the first row that reaches BLOCK_TARGET_BYTES, so a
    # block's text can pass the target by up to one row; at 4,096 a block of the bench's
    # 116-byte rows took a page of its own, half of it empty.
    width = 8
    value = "v" * ((row_bytes - width) // width)  # values and their separators, a line end
    text = "\n".join([",".join(["c"] * width)] + [",".join([value] * width)] * 2000) + "\n"
    fast = FastBlocks(iter([text.encode()]), delimiter=",", width=width, limits=CsvLimits())
    assert fast.skip_header(["c"] * width)
    got = fast.read(2000)
    assert got is not None
    assert sum(got[1]) == 2000
    prefix, _, ciphertexts = cipher.seal_grid_blocks(1, *got)
    sizes = [TUPLE_OVERHEAD + len(prefix) + len(c) for c in ciphertexts[:-1]]
    assert max(sizes) <= PAGE_ROOM_FOR_TWO, (max(sizes), BLOCK_TARGET_BYTES)
    assert min(sizes) > PAGE_ROOM_FOR_TWO - row_bytes - 100  # and not much smaller


@pytest.mark.parametrize(
    "rows",
    [
        [ROW] * 3,  # the grid format
        [ROW, ["a\x00b", "c"], ROW],  # one NUL: the row-list format
        [ROW, [], ROW],  # so does an empty row
        [["\x00"], [""], ["\x00", "\x00"]],
    ],
)
def test_a_block_is_bound_to_its_dataset_and_first_row(
    cipher: RowCipher, rows: list[list[str]]
) -> None:
    prefix, _, ciphertexts = cipher.seal_blocks(41, rows)
    blob = prefix + ciphertexts[0]
    assert cipher.decrypt_block(41, blob) == rows
    with pytest.raises(RowDecryptError, match="block at row 42"):
        cipher.decrypt_block(42, blob)
    other = RowCipher(DATA_KEY, uuid.uuid4())
    with pytest.raises(RowDecryptError, match="authentication failed"):
        other.decrypt_block(41, blob)
    # The same rows at another start: another nonce, another ciphertext.
    assert cipher.seal_blocks(42, rows)[2][0] != ciphertexts[0]


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(_VALUES, min_size=1, max_size=5), data=st.data(), compress=st.booleans())
def test_a_block_rejects_any_single_flipped_bit(
    rows: list[list[str]], data: st.DataObject, compress: bool
) -> None:
    cipher = RowCipher(DATA_KEY, DATASET, attempt=1, compress=compress)
    prefix, _, ciphertexts = cipher.seal_blocks(11, rows)
    blob = bytearray(prefix + ciphertexts[0])
    bit = data.draw(st.integers(0, len(blob) * 8 - 1), label="bit")
    blob[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(RowDecryptError, match="row 11"):
        cipher.decrypt_block(11, bytes(blob))


def test_decrypt_block_reads_a_single_row_blob_of_the_format_before_blocks(
    cipher: RowCipher,
) -> None:
    assert cipher.decrypt_block(9, memoryview(cipher.encrypt(9, ROW))) == [ROW]
    with pytest.raises(RowDecryptError, match="row 10"):
        cipher.decrypt_block(10, cipher.encrypt(9, ROW))


def test_no_rows_seal_to_no_blocks(cipher: RowCipher) -> None:
    assert cipher.seal_blocks(1, [])[1:] == (range(0), [])


@pytest.mark.parametrize(("first", "count"), [(-1, 1), (2**64 - 2, 3), (2**64, 1)])
def test_blocks_reject_row_numbers_outside_64_bits(
    cipher: RowCipher, first: int, count: int
) -> None:
    with pytest.raises(ValueError, match="row numbers"):
        cipher.seal_blocks(first, [ROW] * count)


@pytest.mark.parametrize("max_rows", [0, 65])
def test_blocks_reject_a_size_readers_would_not_find(cipher: RowCipher, max_rows: int) -> None:
    with pytest.raises(ValueError, match="max_rows"):
        cipher.seal_blocks(1, [ROW], max_rows=max_rows)


def test_blocks_refuse_lone_surrogates(cipher: RowCipher) -> None:
    with pytest.raises(UnicodeEncodeError):
        cipher.seal_blocks(1, [ROW, ["\ud800"]])


def test_grid_blocks_made_elsewhere_seal_like_seal_blocks(cipher: RowCipher) -> None:
    from csvault.csvio.blocks import grid_block

    blocks = [[ROW] * 3, [ROW], [["a", "b", "c", "d", "e", "f"]] * 2]
    plaintexts = [grid_block(b) or b"" for b in blocks]
    prefix, starts, ciphertexts = cipher.seal_grid_blocks(10, plaintexts, [3, 1, 2])
    assert starts == [10, 13, 14]
    opened = [cipher.decrypt_block(s, prefix + c) for s, c in zip(starts, ciphertexts, strict=True)]
    assert opened == blocks
    assert cipher.seal_grid_blocks(10, [], [])[1:] == ([], [])


@pytest.mark.parametrize(
    ("plaintexts", "counts"),
    [
        ([b"\x02\x00\x00\x00\x02\x00\x00\x00\x01a\x00b"], [1]),  # says 2 rows, counted 1
        ([b"\x02\x00\x00\x00\x00\x00\x00\x00\x01"], [0]),  # no rows: a start used twice
        ([b"\x03\x00\x00\x00\x01\x00\x00\x00\x00"], [1]),  # not a grid
        ([b"\x02\x00\x00\x00\x01\x00\x00\x00\x01a"], [1, 1]),  # counts do not match
    ],
)
def test_grid_blocks_that_do_not_match_their_counts_are_refused(
    cipher: RowCipher, plaintexts: list[bytes], counts: list[int]
) -> None:
    with pytest.raises(ValueError, match="count"):
        cipher.seal_grid_blocks(1, plaintexts, counts)


# --- compressed blocks ---


def _bench_like_rows(count: int, seed: int = 7) -> list[list[str]]:
    """Rows like the bench's customers (``bench/ingest_bench.py``): about 115 bytes
    of CSV each, with random amounts, dates and e-mail numbers, which LZ4 compresses
    about 2x in blocks of 64 rows."""
    rng = random.Random(seed)
    first = ["Alice", "Bob", "Carol", "Zoë", "José", "Olivia", "Rupert", "Sybil"]
    last = ["Johnson", "Smith", "García", "Martínez", "O'Neil", "Lee", "Walker"]
    cities = ["New York, NY", "São Paulo", "Zürich", "Portland, OR", "Tokyo", "Berlin"]
    notes = ["no comment", 'say "hi"', "call back, after 5pm", "", "prefers email"]
    rows = []
    for _ in range(count):
        name = f"{rng.choice(first)} {rng.choice(last)}"
        rows.append(
            [
                str(rng.randrange(10**9)),
                name,
                f"{name.split()[0].lower()}.{rng.randrange(10**6)}@mail.example.com",
                f"{rng.randrange(-50_000, 100_000_000) / 100:.2f}",
                f"20{rng.randrange(10, 25)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                rng.choice(cities),
                rng.choice(notes),
                rng.choice(["true", "false"]),
            ]
        )
    return rows


def _incompressible_rows(count: int, row_bytes: int, width: int = 4) -> list[list[str]]:
    """Rows of random hex (LZ4 cannot shrink it below about half, so the blocks are
    about as long compressed as not), ``row_bytes`` of CSV each."""
    rng = random.Random(row_bytes)
    size = (row_bytes - width) // width
    return [[rng.randbytes(size // 2 + 1).hex()[:size] for _ in range(width)] for _ in range(count)]


def _c_blocks(rows: list[list[str]], block_bytes: int) -> tuple[list[bytes], list[int]]:
    """The C parser's grid blocks of ``rows`` written as CSV."""
    width = len(rows[0])
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([["c"] * width, *rows])
    fast = FastBlocks(
        iter([text.getvalue().encode()]),
        delimiter=",",
        width=width,
        limits=CsvLimits(),
        block_bytes=block_bytes,
    )
    assert fast.skip_header(["c"] * width)
    got = fast.read(len(rows))
    assert got is not None
    assert sum(got[1]) == len(rows)
    return got


def test_a_compressing_cipher_seals_fewer_bytes_that_any_cipher_opens() -> None:
    rows = _bench_like_rows(2000)
    plain = RowCipher(DATA_KEY, DATASET, attempt=2)
    packed = RowCipher(DATA_KEY, DATASET, attempt=2, compress=True)
    assert packed.block_target_bytes == 2 * plain.block_target_bytes == 2 * BLOCK_TARGET_BYTES
    sealed = packed.seal_blocks(1, rows)
    # Twice the text a block, in about the room an uncompressed block takes.
    assert sealed[1].step == min(64, 2 * plain.seal_blocks(1, rows)[1].step)
    stored = sum(map(len, sealed[2]))
    assert stored * 1.7 < sum(map(len, plain.seal_blocks(1, rows)[2]))  # about 2x
    assert _open_blocks(plain, sealed) == _open_blocks(packed, sealed) == rows
    unpacked = plain.seal_blocks(1, rows)
    assert _open_blocks(packed, unpacked) == rows


@pytest.mark.skipif(not FAST_AVAILABLE, reason="C fast path not built (CI fails on this)")
def test_compressed_blocks_of_the_c_parser_fit_two_to_a_page() -> None:
    cipher = RowCipher(DATA_KEY, DATASET, attempt=1, compress=True)
    rows = _bench_like_rows(4000)
    got = _c_blocks(rows, cipher.block_target_bytes)
    assert set(got[1][:-1]) == {64}  # BLOCK_MAX_ROWS of ~115-byte rows: ~7.3 KB of text
    prefix, starts, ciphertexts = cipher.seal_grid_blocks(1, *got)
    sizes = [TUPLE_OVERHEAD + len(prefix) + len(c) for c in ciphertexts]
    assert max(sizes) <= PAGE_ROOM_FOR_TWO
    assert max(map(len, got[0])) > 2 * max(sizes) - 1000  # LZ4 halves them, or about
    opened = [cipher.decrypt_block(s, prefix + c) for s, c in zip(starts, ciphertexts, strict=True)]
    assert [row for block in opened for row in block] == rows


# PostgreSQL keeps a tuple inline, uncompressed, up to toast_tuple_target (8,160 bytes,
# the migration's setting): anything longer is compressed or moved to the TOAST table.
TOAST_TUPLE_TARGET = 8160


@pytest.mark.skipif(not FAST_AVAILABLE, reason="C fast path not built (CI fails on this)")
@pytest.mark.parametrize("row_bytes", [400, 1010, 1500, 5000])
def test_wide_rows_that_do_not_compress_stay_under_the_toast_target(row_bytes: int) -> None:
    # The parser closes a block at the first row that reaches its target, so a block can
    # pass it by up to a row; a grid block over BLOCK_MAX_STORED_BYTES is cut in two.
    # (Uncompressed, a block of two rows or more stays under 2 x 3,840 bytes of text.)
    cipher = RowCipher(DATA_KEY, DATASET, attempt=4, compress=True)
    rows = _incompressible_rows(300, row_bytes)
    plaintexts, counts = _c_blocks(rows, cipher.block_target_bytes)
    assert max(map(len, plaintexts)) > BLOCK_MAX_STORED_BYTES  # the case this is about
    prefix, starts, ciphertexts = cipher.seal_grid_blocks(11, plaintexts, counts)
    assert len(starts) > len(plaintexts)
    assert max(TUPLE_OVERHEAD + len(prefix) + len(c) for c in ciphertexts) <= TOAST_TUPLE_TARGET
    opened = [cipher.decrypt_block(s, prefix + c) for s, c in zip(starts, ciphertexts, strict=True)]
    assert starts == list(accumulate(map(len, opened[:-1]), initial=11))  # consecutive
    assert [row for block in opened for row in block] == rows


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(1, 5),
    data=st.data(),
)
def test_a_grid_block_split_in_two_holds_the_same_rows(width: int, data: st.DataObject) -> None:
    values = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
    rows = data.draw(
        st.lists(st.lists(values, min_size=width, max_size=width), min_size=2, max_size=64)
    )
    plaintext = grid_block(rows)
    assert plaintext is not None
    first, first_count, second, second_count = split_grid(plaintext)
    assert (first_count, second_count) == (len(rows) // 2, len(rows) - len(rows) // 2)
    assert block_rows(first) + block_rows(second) == rows
    assert grid_row_count(first) == first_count
    assert grid_row_count(second) == second_count
    with pytest.raises(ValueError, match="one row"):
        split_grid(grid_block(rows[:1]) or b"")


@pytest.mark.parametrize(
    ("plaintext", "why"),
    [
        (b"\x04", "does not decompress"),  # no size, no payload
        (b"\x04\x10\x00\x00\x00garbage", "does not decompress"),
        (b"\x04" + lz4.block.compress(b""), "empty or compressed"),
        (b"\x04" + lz4.block.compress(b"\x04" + lz4.block.compress(grid_block([ROW]) or b"")),
         "empty or compressed"),
    ],
)  # fmt: skip
def test_a_compressed_block_that_does_not_open_to_a_block_is_refused(
    cipher: RowCipher, plaintext: bytes, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        block_rows(plaintext)
    # Sealed as this version seals a block, so authentication passes and the plaintext's
    # own shape is what is checked.
    prefix, starts, _ = cipher.seal_grid_blocks(7, [grid_block([ROW]) or b""], [1])
    blob = prefix + cipher._seal(starts, [plaintext])[0]
    with pytest.raises(RowDecryptError, match="block at row 7: decrypted block is malformed"):
        cipher.decrypt_block(7, blob)


def test_a_compressed_block_of_an_unknown_format_is_refused(cipher: RowCipher) -> None:
    plaintext = b"\x04" + lz4.block.compress(b"\x09abc")
    with pytest.raises(UnknownFormat):
        block_rows(plaintext)
    prefix, starts, _ = cipher.seal_grid_blocks(7, [grid_block([ROW]) or b""], [1])
    blob = prefix + cipher._seal(starts, [plaintext])[0]
    with pytest.raises(RowDecryptError, match="block at row 7: unknown block encoding 9"):
        cipher.decrypt_block(7, blob)
