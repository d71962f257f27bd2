"""The built-in signature matcher: findings at any chunking, hashes, wildcards, and refusals."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csvault.scanning.builtin import BLOCK_SIZE, DESCRIPTION, SignatureScanner
from csvault.scanning.chunks import rechunk
from tests.scanning.samples import SIGNATURES, chunked, clean_csv, csv_with_cell, eicar

EICAR_NAME = "csvault.EICAR-Test-File"


def signature_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    """A signature directory holding ``files`` (file name -> content)."""
    directory = tmp_path / "signatures"
    directory.mkdir(exist_ok=True)
    for name, content in files.items():
        (directory / name).write_text(content)
    return directory


@pytest.fixture(scope="module")
def shipped() -> SignatureScanner:
    return SignatureScanner(SIGNATURES)


def test_it_says_it_is_minimal(shipped: SignatureScanner) -> None:
    assert shipped.minimal is True
    assert shipped.name == "builtin"
    assert shipped.description == DESCRIPTION
    assert "minimal" in DESCRIPTION


@pytest.mark.parametrize("chunk_size", [1, 7, 4096, 65536])
def test_it_finds_eicar_inside_one_csv_cell(shipped: SignatureScanner, chunk_size: int) -> None:
    # Starting 30 bytes before 64 KiB, the string crosses a chunk boundary at every size.
    data = csv_with_cell(eicar(), start=65536 - 30)

    result = shipped.scan(chunked(data, chunk_size))

    assert result.clean is False
    assert result.signature == EICAR_NAME


@pytest.mark.parametrize("block_size", [1, 16, 67, 68, 69, 4096])
def test_it_finds_eicar_across_its_own_block_boundaries(block_size: int) -> None:
    scanner = SignatureScanner(SIGNATURES, block_size=block_size)
    data = csv_with_cell(eicar(), start=5000)

    assert scanner.scan(chunked(data, 4096)).signature == EICAR_NAME


@settings(max_examples=150, deadline=None)
@given(
    before=st.binary(max_size=600),
    after=st.binary(max_size=600),
    chunk_sizes=st.lists(st.integers(1, 300), min_size=1, max_size=20),
    block_size=st.integers(1, 200),
)
def test_it_finds_a_signature_wherever_the_stream_is_cut(
    before: bytes, after: bytes, chunk_sizes: list[int], block_size: int
) -> None:
    scanner = SignatureScanner(SIGNATURES, block_size=block_size)
    data = before + eicar() + after
    chunks, position, turn = [], 0, 0
    while position < len(data):
        size = chunk_sizes[turn % len(chunk_sizes)]
        chunks.append(data[position : position + size])
        position, turn = position + size, turn + 1

    assert scanner.scan(chunks).signature == EICAR_NAME


def test_it_passes_a_clean_5_mb_csv(shipped: SignatureScanner) -> None:
    data = clean_csv(5 * 1024 * 1024)

    result = shipped.scan(chunked(data, 65536))

    assert result.clean is True
    assert result.signature is None


def test_it_passes_an_empty_file(shipped: SignatureScanner) -> None:
    assert shipped.scan([]).clean is True
    assert shipped.scan([b""]).clean is True


def test_it_passes_eicar_cut_short_by_one_byte(shipped: SignatureScanner) -> None:
    assert shipped.scan([csv_with_cell(eicar()[:-1], start=100)]).clean is True


def test_it_stops_reading_at_the_first_finding(shipped: SignatureScanner) -> None:
    def chunks():
        # Input is scanned in blocks: a finding ends the scan at the end of its block.
        yield eicar() + b"," * BLOCK_SIZE
        raise AssertionError("read past the finding")

    assert shipped.scan(chunks()).signature == EICAR_NAME


def test_it_matches_the_md5_hash_signature_of_the_eicar_file(tmp_path: Path) -> None:
    directory = tmp_path / "hashes-only"
    directory.mkdir()
    shutil.copy(SIGNATURES / "csvault-test.hdb", directory)
    scanner = SignatureScanner(directory)

    assert scanner.scan(chunked(eicar(), 5)).signature == "csvault.EICAR-Test-File.MD5"
    # A hash covers the whole file: anything around the string changes it.
    assert scanner.scan([eicar() + b"\n"]).clean is True


def test_it_matches_sha256_and_sha1_hashes_with_any_size(tmp_path: Path) -> None:
    content = b"id,name\n1,known bad file\n"
    sha256 = hashlib.sha256(content).hexdigest()
    sha1 = hashlib.sha1(content, usedforsecurity=False).hexdigest()
    scanner = SignatureScanner(
        signature_dir(
            tmp_path,
            {
                "a.hsb": f"{sha256}:*:Test.Sha256\n",
                "b.hdb": f"{sha1.upper()}:{len(content)}:Test.Sha1\n",
            },
        )
    )

    assert scanner.scan(chunked(content, 3)).signature in {"Test.Sha256", "Test.Sha1"}
    assert scanner.scan([content + b"2,fine\n"]).clean is True


def test_it_needs_the_size_of_a_hash_signature_to_match(tmp_path: Path) -> None:
    content = b"id\n1\n"
    md5 = hashlib.md5(content, usedforsecurity=False).hexdigest()
    scanner = SignatureScanner(
        signature_dir(tmp_path, {"x.hdb": f"{md5}:{len(content) + 1}:Bad\n"})
    )

    assert scanner.scan([content]).clean is True


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 1000])
def test_it_matches_any_byte_for_a_double_question_mark(tmp_path: Path, chunk_size: int) -> None:
    # "AB" ?? "DE"
    scanner = SignatureScanner(signature_dir(tmp_path, {"w.ndb": "Test.Wild:0:*:4142??4445\n"}))

    for hit in (b"xxABCDExx", b"ABxDE", b"AB\nDE", b"AB\x00DE"):
        assert scanner.scan(chunked(hit, chunk_size)).signature == "Test.Wild", hit
    for miss in (b"ABDE", b"ABxxDE", b"AB-D"):
        assert scanner.scan(chunked(miss, chunk_size)).clean is True, miss


@pytest.mark.parametrize("chunk_size", [1, 4, 1000])
def test_it_matches_an_offset_signature_only_at_that_offset(
    tmp_path: Path, chunk_size: int
) -> None:
    scanner = SignatureScanner(
        signature_dir(tmp_path, {"o.ndb": "Test.AtFive:0:5:414243\nTest.WildAtZero:*:0:5a??5a\n"})
    )

    assert scanner.scan(chunked(b"12345ABC6789", chunk_size)).signature == "Test.AtFive"
    assert scanner.scan(chunked(b"12345ABC", chunk_size)).signature == "Test.AtFive"
    assert scanner.scan(chunked(b"Z-Z,rest", chunk_size)).signature == "Test.WildAtZero"
    for miss in (b"1234ABC", b"123456ABC", b"ABC", b"", b"xZ-Z"):
        assert scanner.scan(chunked(miss, chunk_size)).clean is True, miss


UNSUPPORTED = [
    ("Bad.Range:0:*:4142{1-2}4344", "{n-m}"),
    ("Bad.Alternative:0:*:41(42|43)44", "(a|b)"),
    ("Bad.Star:0:*:4142*4344", "*"),
    ("Bad.Nibble:0:*:41?243", "nibble wildcard"),
    ("Bad.Class:0:*:41[1-2]43", "[n-m]"),
    ("Bad.Target:1:*:414243", "PE target type"),
    ("Bad.Offset:0:EOF-10:414243", "EOF offset"),
    ("Bad.Shift:0:10,20:414243", "offset with shift"),
    ("Bad.OddHex:0:*:41424", "odd hex"),
    ("Bad.OnlyWildcards:0:*:????", "no fixed byte"),
    ("Bad.TooFewFields:0:*", "missing field"),
]


@pytest.mark.parametrize(("line", "feature"), UNSUPPORTED, ids=[f for _, f in UNSUPPORTED])
def test_it_skips_unsupported_signature_lines_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, line: str, feature: str
) -> None:
    directory = signature_dir(tmp_path, {"s.ndb": f"{line}\nTest.Good:0:*:474f4f44\n"})

    with caplog.at_level(logging.WARNING, logger="csvault.scanning.builtin"):
        scanner = SignatureScanner(directory)

    assert scanner.signature_count == 1
    assert "s.ndb:1: signature skipped" in caplog.text
    assert scanner.scan([b"ABCD A{1}D A\x01\x02C GOOD"]).signature == "Test.Good"


def test_it_reads_comments_and_blank_lines_as_nothing(tmp_path: Path) -> None:
    directory = signature_dir(tmp_path, {"c.ndb": "# a comment\n\nTest.Good:0:*:474f4f44\n"})

    assert SignatureScanner(directory).signature_count == 1


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"README.md": "not signatures\n"},
        {"main.ldb": "Some.Logical;Engine:51-255,Target:0;0;41424344\n"},
        {"bad.ndb": "Bad.Range:0:*:4142{1-2}4344\n"},
        {"empty.hdb": "\n# nothing\n"},
    ],
    ids=["empty", "no signature files", "only unsupported formats", "only bad lines", "blank"],
)
def test_it_refuses_a_directory_without_usable_signatures(
    tmp_path: Path, files: dict[str, str]
) -> None:
    directory = signature_dir(tmp_path, files)

    with pytest.raises(ValueError, match="no usable signatures"):
        SignatureScanner(directory)


def test_it_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        SignatureScanner(tmp_path / "nowhere")


@given(data=st.binary(max_size=2000), sizes=st.lists(st.integers(1, 100), min_size=1))
def test_rechunk_keeps_the_bytes_and_bounds_every_piece(data: bytes, sizes: list[int]) -> None:
    chunks = []
    position = 0
    for size in sizes * (len(data) + 1):
        if position >= len(data):
            break
        chunks.append(data[position : position + size])
        position += size

    pieces = list(rechunk(chunks, 64))

    assert b"".join(pieces) == data
    assert all(0 < len(piece) <= 64 for piece in pieces)
    assert all(len(piece) == 64 for piece in pieces[:-1])
