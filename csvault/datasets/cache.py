"""Hot reads from the cache: dataset detail, progress and the owner's list.

Keys carry the owner's id and the dataset's id, so what one user warmed is never
served to another. Values hold metadata and progress only: the header names stay
encrypted in the cache (their ciphertext and the master key id; the wrapped data
key that opens them never enters the cache); rows are never cached. Every write
to a dataset goes through ``dataset_update`` (update.py), which calls
:func:`dataset_changed`: that clears the dataset's keys (again after commit),
gives it a new generation (see below) and moves the owner's list version on.
The readers are the selectors (selectors.py). With the cache down
(django-redis ignores its errors) reads fall through to the database.
"""

from __future__ import annotations

import base64
import functools
import logging
import uuid
from typing import Any

from django.core.cache import cache

from csvault.crypto.rows import RowCipher
from csvault.datasets.keys import HEADER_ROW, WARNINGS_ROW, get_keyring, warnings_from
from csvault.datasets.models import Dataset

logger = logging.getLogger(__name__)

TTL_SECONDS = 300
_KINDS = ("detail", "progress")


@functools.lru_cache(maxsize=4096)
def _owner_of(dataset_id: str) -> int | None:
    # A dataset's owner never changes, so this memo is always right.
    return Dataset.objects.filter(id=dataset_id).values_list("owner_id", flat=True).first()


def entry_key(owner_id: int | str, dataset_id: uuid.UUID | str, kind: str) -> str:
    # v2: values are {"g": generation, "v": value}; a new prefix, so processes of
    # both versions can run side by side during a rolling deploy.
    return f"csvault:ds2:{owner_id}:{dataset_id}:{kind}"


def generation_key(dataset_id: uuid.UUID | str) -> str:
    return f"csvault:ds2:{dataset_id}:gen"


def list_version_key(owner_id: int | str) -> str:
    return f"csvault:dslist:{owner_id}:version"


# Why a generation: a reader that misses reads the database and then fills the
# cache. If a write commits (and clears the keys) between the reader's database
# read and its fill, a plain fill would put the pre-write state back, for the
# whole TTL: a finished ingest would poll as "processing" for minutes. So every
# write sets a new random generation for the dataset (after commit), a reader
# notes the generation *before* it reads the database and stores it with the
# value, and a value counts only while its generation is the current one. Both
# keys come back in one round trip. The generation outlives every value stored
# under an older one (GENERATION_TTL > TTL_SECONDS + any request's duration).
GENERATION_TTL = 3600


def cache_get(owner_id: int, dataset_id: uuid.UUID | str, kind: str) -> tuple[Any, str]:
    """``(value or None, generation)``: pass the generation to :func:`cache_set`."""
    key, gen_key = entry_key(owner_id, dataset_id, kind), generation_key(dataset_id)
    found = cache.get_many([key, gen_key])
    generation = found.get(gen_key) or ""
    return fresh_value(found.get(key), generation), generation


def fresh_value(entry: Any, generation: str) -> Any:
    """The value of a cached entry if it was stored under ``generation``, else None."""
    if isinstance(entry, dict) and entry.get("g") == generation:
        return entry["v"]
    return None


def cache_set(
    owner_id: int, dataset_id: uuid.UUID | str, kind: str, value: Any, generation: str
) -> None:
    """Store a value read from the database after ``cache_get`` returned ``generation``."""
    cache.set(entry_key(owner_id, dataset_id, kind), {"g": generation, "v": value}, TTL_SECONDS)


def list_cache_key(owner_id: int, *parts: str) -> str:
    return list_key(owner_id, cache.get(list_version_key(owner_id)) or 0, *parts)


def list_key(owner_id: int | str, version: int | str, *parts: str) -> str:
    """The key of one of the owner's cached list pages at a list version."""
    return f"csvault:dslist:{owner_id}:{version}:" + ":".join(parts)


def dataset_changed(dataset_id: uuid.UUID | str, owner_id: int | None = None) -> None:
    """Forget the cached reads of one dataset and of its owner's list."""
    owner = owner_id if owner_id is not None else _owner_of(str(dataset_id))
    if owner is None:
        return
    cache.set(generation_key(dataset_id), uuid.uuid4().hex, GENERATION_TTL)
    cache.delete_many([entry_key(owner, dataset_id, kind) for kind in _KINDS])
    owner_list_changed(owner)


def owner_list_changed(owner_id: int) -> None:
    key = list_version_key(owner_id)
    try:
        cache.incr(key)
    except ValueError:  # no version yet (or the cache is down: then nothing is cached)
        cache.set(key, 1, None)


# --- header names travel sealed -------------------------------------------------------------
# The cache holds the header's ciphertext and the id of the master key only. The
# wrapped data key stays out of it (a Redis snapshot must not outlive a
# crypto-shredding DELETE); each web process keeps the wrapped keys it needs in a
# small in-memory table, keyed by (dataset, master key id), filled from the
# database once.


def seal_columns(dataset: Any) -> dict[str, str] | None:
    """The header (and the warnings, once there are any) as their ciphertexts."""
    if not dataset.columns_ciphertext:
        return None
    sealed = {
        "ct": base64.b64encode(bytes(dataset.columns_ciphertext)).decode(),
        "key_id": dataset.key_id,
    }
    if dataset.warnings_ciphertext:
        sealed["w"] = base64.b64encode(bytes(dataset.warnings_ciphertext)).decode()
    return sealed


@functools.lru_cache(maxsize=1024)
def _wrapped_key(dataset_id: str, key_id: str) -> bytes:
    wrapped = (
        Dataset.objects.filter(id=dataset_id, key_id=key_id, deleted_at__isnull=True)
        .values_list("wrapped_key", flat=True)
        .first()
    )
    if not wrapped:
        raise _Shredded  # not remembered: lru_cache keeps only returned values
    return bytes(wrapped)


class _Shredded(Exception):
    pass


def open_sealed(
    dataset_id: uuid.UUID | str, sealed: dict[str, str] | None
) -> tuple[RowCipher, list[str]] | None:
    """The dataset's row cipher and header names from the sealed header; None if there
    is no header yet or the dataset was deleted meanwhile."""
    if not sealed:
        return None
    try:
        wrapped = _wrapped_key(str(dataset_id), sealed["key_id"])
    except _Shredded:
        return None
    data_key = get_keyring().unwrap(sealed["key_id"], wrapped)
    cipher = RowCipher(data_key, uuid.UUID(str(dataset_id)), 0)
    return cipher, cipher.decrypt(HEADER_ROW, base64.b64decode(sealed["ct"]))


def open_columns(
    dataset_id: uuid.UUID | str, sealed: dict[str, str] | None
) -> tuple[list[str], list[dict[str, Any]]]:
    """The header names and the warnings from their sealed form; both empty if the
    dataset was deleted meanwhile."""
    opened = open_sealed(dataset_id, sealed)
    if opened is None:
        return [], []
    cipher, columns = opened
    warnings = sealed.get("w") if sealed else None
    if not warnings:
        return columns, []
    return columns, warnings_from(cipher.decrypt(WARNINGS_ROW, base64.b64decode(warnings)))
