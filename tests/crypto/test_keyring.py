"""Master keyring: spec parsing, data-key wrapping, rotation. Pure code, no Django."""

from __future__ import annotations

import base64
import os
import re
import traceback
import uuid

import pytest

from csvault.crypto.keyring import (
    WRAPPED_KEY_SIZE,
    Keyring,
    KeyringError,
    derive_subkey,
    generate_master_key_spec,
    new_data_key,
    parse_master_keys,
)

KEY_A = os.urandom(32)
KEY_B = os.urandom(32)
B64_A = base64.b64encode(KEY_A).decode()
B64_B = base64.b64encode(KEY_B).decode()


def _full_text(exc: BaseException) -> str:
    """Everything a log would show for this exception, chained causes included."""
    return "".join(traceback.format_exception(exc))


def test_it_parses_a_spec_and_makes_the_first_key_active() -> None:
    ring = parse_master_keys(f"a:{B64_A},b:{B64_B}")
    assert ring.active_id == "a"
    assert ring.ids == ("a", "b")
    assert "a" in ring
    assert "c" not in ring


def test_it_tolerates_whitespace_around_entries() -> None:
    ring = parse_master_keys(f"  a : {B64_A} ,\n\tb:{B64_B}\n")
    assert ring.ids == ("a", "b")


def test_its_repr_names_ids_but_not_keys() -> None:
    ring = parse_master_keys(f"a:{B64_A}")
    assert "a" in repr(ring)
    assert B64_A not in repr(ring)
    assert repr(KEY_A) not in repr(ring)


SHORT_KEY_B64 = base64.b64encode(b"k" * 16).decode()
LONG_KEY_B64 = base64.b64encode(b"k" * 33).decode()


@pytest.mark.parametrize(
    ("spec", "secret", "expected"),
    [
        ("", None, "empty"),
        ("   \n ", None, "empty"),
        (f"a:{B64_A},", B64_A, "entry #2 is empty"),
        (f"a:{B64_A},,b:{B64_B}", B64_B, "entry #2 is empty"),
        (B64_A, B64_A, "must look like 'id:base64key'"),
        (f"a:{B64_A[:-2]}!!", B64_A[:-2], "not valid standard base64"),
        (f"a:{B64_A.rstrip('=')}", B64_A.rstrip("="), "not valid standard base64"),
        (f"a:{SHORT_KEY_B64}", SHORT_KEY_B64, "decodes to 16 bytes"),
        (f"a:{LONG_KEY_B64}", LONG_KEY_B64, "decodes to 33 bytes"),
        (f"a:{B64_A},a:{B64_B}", B64_B, "repeats the id 'a'"),
        (f":{B64_A}", B64_A, "invalid id"),
        (f"bad id:{B64_A}", B64_A, "invalid id"),
        (f"{'x' * 65}:{B64_A}", B64_A, "invalid id"),
        # A swapped entry: the "id" is the key, and must not be echoed back.
        (f"{B64_A}:a", B64_A, "invalid id"),
    ],
)
def test_it_rejects_bad_specs_without_revealing_key_material(
    spec: str, secret: str | None, expected: str
) -> None:
    with pytest.raises(KeyringError) as excinfo:
        parse_master_keys(spec)
    message = str(excinfo.value)
    assert expected in message
    if secret is not None:
        assert secret not in _full_text(excinfo.value)
        assert secret[:8] not in _full_text(excinfo.value)


def test_it_rejects_keys_of_the_wrong_size_when_built_directly() -> None:
    with pytest.raises(KeyringError, match="16 bytes"):
        Keyring([("a", b"k" * 16)])


def test_it_rejects_an_empty_keyring_when_built_directly() -> None:
    with pytest.raises(KeyringError, match="no master keys"):
        Keyring([])


def test_it_round_trips_a_wrapped_data_key() -> None:
    ring = parse_master_keys(f"a:{B64_A},b:{B64_B}")
    data_key = new_data_key()
    key_id, wrapped = ring.wrap(data_key)
    assert key_id == "a"
    assert len(wrapped) == WRAPPED_KEY_SIZE
    assert data_key not in wrapped
    assert ring.unwrap(key_id, wrapped) == data_key


def test_it_uses_a_fresh_nonce_for_every_wrap() -> None:
    ring = parse_master_keys(f"a:{B64_A}")
    data_key = new_data_key()
    assert ring.wrap(data_key)[1] != ring.wrap(data_key)[1]


def test_it_refuses_to_wrap_a_data_key_of_the_wrong_size() -> None:
    ring = parse_master_keys(f"a:{B64_A}")
    with pytest.raises(ValueError, match="32 bytes"):
        ring.wrap(b"short")


def test_it_reports_an_unknown_master_key_id() -> None:
    ring = parse_master_keys(f"a:{B64_A}")
    _, wrapped = ring.wrap(new_data_key())
    with pytest.raises(KeyringError, match="unknown master key id 'zz'"):
        ring.unwrap("zz", wrapped)


def test_it_rejects_a_tampered_wrapped_key() -> None:
    ring = parse_master_keys(f"a:{B64_A}")
    key_id, wrapped = ring.wrap(new_data_key())
    tampered = bytearray(wrapped)
    tampered[20] ^= 0x01
    with pytest.raises(KeyringError, match="failed authentication"):
        ring.unwrap(key_id, bytes(tampered))


def test_it_rejects_a_wrapped_key_of_the_wrong_length() -> None:
    ring = parse_master_keys(f"a:{B64_A}")
    key_id, wrapped = ring.wrap(new_data_key())
    with pytest.raises(KeyringError, match="expected 60"):
        ring.unwrap(key_id, wrapped[:-1])


def test_it_binds_the_wrapped_key_to_its_master_key_id() -> None:
    # Same key material under two ids: only the associated data tells them apart.
    ring = Keyring([("a", KEY_A), ("b", KEY_A)])
    _, wrapped = ring.wrap(new_data_key())
    with pytest.raises(KeyringError, match="failed authentication"):
        ring.unwrap("b", wrapped)


def test_it_fails_to_unwrap_with_a_different_key_under_the_same_id() -> None:
    _, wrapped = parse_master_keys(f"a:{B64_A}").wrap(new_data_key())
    with pytest.raises(KeyringError, match="failed authentication"):
        parse_master_keys(f"a:{B64_B}").unwrap("a", wrapped)


def test_it_rotates_a_data_key_to_a_new_master_key() -> None:
    data_key = new_data_key()
    old_ring = parse_master_keys(f"a:{B64_A}")
    old_id, old_wrapped = old_ring.wrap(data_key)

    rotating_ring = parse_master_keys(f"b:{B64_B},a:{B64_A}")
    assert rotating_ring.unwrap(old_id, old_wrapped) == data_key
    new_id, new_wrapped = rotating_ring.rewrap(old_id, old_wrapped)
    assert new_id == "b"

    new_ring = parse_master_keys(f"b:{B64_B}")
    assert new_ring.unwrap(new_id, new_wrapped) == data_key
    with pytest.raises(KeyringError, match="unknown master key id 'a'"):
        new_ring.unwrap(old_id, old_wrapped)


def test_it_generates_a_parseable_spec_with_a_timestamped_default_id() -> None:
    line = generate_master_key_spec()
    key_id, _, encoded = line.partition(":")
    assert re.fullmatch(r"k\d{8}T\d{6}", key_id)
    assert len(base64.b64decode(encoded, validate=True)) == 32
    assert parse_master_keys(line).active_id == key_id


def test_it_generates_a_different_key_every_time() -> None:
    assert generate_master_key_spec("x") != generate_master_key_spec("x")


def test_it_refuses_to_generate_a_spec_with_an_invalid_id() -> None:
    with pytest.raises(KeyringError, match="invalid"):
        generate_master_key_spec("no spaces")


def test_new_data_keys_are_random_32_byte_keys() -> None:
    keys = {new_data_key() for _ in range(10)}
    assert len(keys) == 10
    assert all(len(key) == 32 for key in keys)


def test_subkeys_differ_by_purpose_and_by_dataset() -> None:
    data_key = new_data_key()
    dataset_a, dataset_b = uuid.uuid4(), uuid.uuid4()
    rows_a = derive_subkey(data_key, dataset_a, b"csvault/rows/v1")
    assert rows_a == derive_subkey(data_key, dataset_a, b"csvault/rows/v1")
    assert rows_a != derive_subkey(data_key, dataset_a, b"csvault/file/v1")
    assert rows_a != derive_subkey(data_key, dataset_b, b"csvault/rows/v1")
    assert len(rows_a) == 32


def test_subkey_derivation_rejects_a_data_key_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        derive_subkey(b"x" * 16, uuid.uuid4(), b"csvault/rows/v1")
