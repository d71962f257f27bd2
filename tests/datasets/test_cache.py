"""Hot reads from the cache: no database query per poll, cleared by writes, per owner,
never plaintext in the cache, and the database behind it when the cache is down."""

from __future__ import annotations

import base64
import pickle
import zlib
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache

from csvault.datasets.models import Dataset
from tests.csvdata import MARKER, to_csv, tricky_rows
from tests.helpers import ingest, upload

pytestmark = pytest.mark.django_db

SECRET_HEADER = ["id", f"{MARKER}-column", "note"]


def secret_csv(rows: int = 5) -> bytes:
    return to_csv([[str(i), f"{MARKER}-{i}", "x"] for i in range(rows)], header=SECRET_HEADER)


def cached_values() -> list[bytes]:
    """Every value in the default cache, as stored (pickled bytes, decompressed)."""
    store = getattr(cache, "_cache", None)
    if isinstance(store, dict):  # locmem
        return [bytes(v) for v in store.values()]
    cache_dir = getattr(cache, "_dir", None)
    if cache_dir:  # FileBasedCache: pickled expiry, then zlib(pickle(value))
        values = []
        for path in Path(cache_dir).glob("*.djcache"):
            with path.open("rb") as fh:
                pickle.load(fh)
                values.append(zlib.decompress(fh.read()))
        return values
    from django_redis import get_redis_connection

    redis = get_redis_connection("default")
    return [redis.dump(key) or b"" for key in redis.scan_iter("*")]


def test_polling_progress_costs_no_database_query(api, django_assert_num_queries):
    dataset_id = upload(api, secret_csv()).json()["id"]
    api.get(f"/api/datasets/{dataset_id}/progress/")  # warms token and progress
    for _ in range(3):
        with django_assert_num_queries(0):
            response = api.get(f"/api/datasets/{dataset_id}/progress/")
        assert response.status_code == 200
    api.get(f"/api/datasets/{dataset_id}/")
    with django_assert_num_queries(0):
        assert api.get(f"/api/datasets/{dataset_id}/").status_code == 200
    api.get("/api/datasets/")
    with django_assert_num_queries(0):
        assert api.get("/api/datasets/").status_code == 200


def test_writes_clear_the_cached_reads(api):
    dataset_id = upload(api, secret_csv()).json()["id"]
    assert api.get(f"/api/datasets/{dataset_id}/progress/").json()["status"] == "pending"
    assert api.get(f"/api/datasets/{dataset_id}/").json()["columns"] == []
    listed = api.get("/api/datasets/").json()["results"]
    assert [d["status"] for d in listed] == ["pending"]

    ingest(_created(dataset_id))

    progress = api.get(f"/api/datasets/{dataset_id}/progress/").json()
    assert (progress["status"], progress["percent"]) == ("completed", 100.0)
    detail = api.get(f"/api/datasets/{dataset_id}/").json()
    assert (detail["status"], detail["row_count"]) == ("completed", 5)
    assert detail["columns"] == SECRET_HEADER
    assert [d["status"] for d in api.get("/api/datasets/").json()["results"]] == ["completed"]

    upload(api, b"a\n1\n")
    assert len(api.get("/api/datasets/").json()["results"]) == 2
    api.post(f"/api/datasets/{dataset_id}/cancel/")
    api.delete(f"/api/datasets/{dataset_id}/")
    assert api.get(f"/api/datasets/{dataset_id}/progress/").status_code == 404
    assert api.get(f"/api/datasets/{dataset_id}/").status_code == 404
    assert len(api.get("/api/datasets/").json()["results"]) == 1


class _created:
    """What ingest() needs of an upload response."""

    status_code = 201

    def __init__(self, dataset_id: str) -> None:
        self.dataset_id = dataset_id

    def json(self) -> dict[str, Any]:
        return {"id": self.dataset_id}


def test_what_one_user_warmed_is_never_served_to_another(api, other_api):
    dataset_id = ingest(upload(api, secret_csv()))
    for suffix in ("", "progress/"):
        assert api.get(f"/api/datasets/{dataset_id}/{suffix}").status_code == 200
        assert other_api.get(f"/api/datasets/{dataset_id}/{suffix}").status_code == 404
    assert other_api.get("/api/datasets/").json()["results"] == []


def test_no_plaintext_header_or_cell_nor_a_wrapped_key_reaches_the_cache(api):
    dataset_id = ingest(upload(api, secret_csv()))
    wrapped = bytes(Dataset.objects.get(id=dataset_id).wrapped_key)
    api.get(f"/api/datasets/{dataset_id}/")
    api.get(f"/api/datasets/{dataset_id}/progress/")
    api.get("/api/datasets/")
    api.get(f"/api/datasets/{dataset_id}/rows/")
    values = cached_values()
    assert len(values) >= 4
    for value in values:
        assert MARKER.encode() not in value
        # A snapshot of the cache must not keep a key that DELETE shreds.
        assert wrapped not in value
        assert base64.b64encode(wrapped) not in value


def test_a_dead_cache_falls_back_to_the_database(api, settings):
    dataset_id = ingest(upload(api, to_csv(tricky_rows(3))))
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 0.2},
        }
    }
    for suffix in ("", "progress/", "rows/"):
        assert api.get(f"/api/datasets/{dataset_id}/{suffix}").status_code == 200
    assert api.get("/api/datasets/").status_code == 200
    assert upload(api, b"a\n1\n").status_code == 201


def test_a_fill_racing_a_write_cannot_bring_the_old_state_back(api):
    """A reader that read the database before a write committed, and fills the cache
    after the write cleared it, must not serve the pre-write state afterwards (a
    finished ingest would otherwise poll as unfinished until the entry expired)."""
    from csvault.datasets.progress import progress_from_checkpoint
    from csvault.datasets.selectors import _read_through
    from csvault.datasets.update import dataset_update

    dataset_id = upload(api, secret_csv()).json()["id"]
    dataset = Dataset.objects.select_related("owner").get(id=dataset_id)

    def read_then_a_write_commits(current: Dataset) -> dict[str, Any]:
        stale = progress_from_checkpoint(dataset=current)
        dataset_update(dataset_id=current.id, status="cancelled")
        return stale

    late_fill = _read_through(dataset.owner, dataset.id, "progress", read_then_a_write_commits)
    assert late_fill["status"] == "pending"  # what that one reader saw
    assert api.get(f"/api/datasets/{dataset_id}/progress/").json()["status"] == "cancelled"


def test_a_page_of_rows_costs_one_query_once_the_detail_is_cached(
    api, other_api, django_assert_num_queries
):
    dataset_id = ingest(upload(api, secret_csv(5)))
    api.get(f"/api/datasets/{dataset_id}/")  # warms token and detail
    with django_assert_num_queries(1):  # the page itself
        page = api.get(f"/api/datasets/{dataset_id}/rows/?after=1&limit=2").json()
    assert page["columns"] == SECRET_HEADER
    assert [row["row"] for row in page["results"]] == [2, 3]
    assert page["results"][0]["values"] == ["1", f"{MARKER}-1", "x"]
    # The cached detail is the gate: others get 404, and a DELETE closes it at once.
    assert other_api.get(f"/api/datasets/{dataset_id}/rows/").status_code == 404
    assert api.delete(f"/api/datasets/{dataset_id}/").status_code == 204
    assert api.get(f"/api/datasets/{dataset_id}/rows/").status_code == 404


def test_a_stale_cached_gate_still_serves_no_rows_of_a_deleted_dataset(api):
    """Even if a DELETE's cache clearing were lost, the page query itself checks that
    the dataset is the caller's and not deleted."""
    from django.utils import timezone

    dataset_id = ingest(upload(api, secret_csv(5)))
    api.get(f"/api/datasets/{dataset_id}/")  # the cached detail: the gate
    Dataset.objects.filter(id=dataset_id).update(deleted_at=timezone.now())  # no cache clear
    response = api.get(f"/api/datasets/{dataset_id}/rows/")
    assert response.status_code == 200  # the stale gate lets it through...
    assert response.json()["results"] == []  # ...but no row comes back


def test_spellings_of_one_page_size_share_one_cache_entry_and_cursors_add_none(api, monkeypatch):
    ingest(upload(api, b"a\n1\n"))
    stored: list[str] = []
    real_set = cache.set

    def spy(key: str, *args: Any, **kwargs: Any) -> Any:
        if key.startswith("csvault:dslist:") and not key.endswith(":version"):
            stored.append(key)
        return real_set(key, *args, **kwargs)

    monkeypatch.setattr(cache, "set", spy)
    for spelling in ["200", "0200", "00200", "000200", "+200", "9999"]:
        assert api.get(f"/api/datasets/?page_size={spelling}").status_code == 200
    assert len(set(stored)) == 1, stored  # 9999 is capped to 200, the same page
    assert api.get("/api/datasets/?page_size=abc").status_code == 200  # the default size
    assert len(set(stored)) == 2
    first = api.get("/api/datasets/?page_size=1").json()
    assert len(set(stored)) == 3
    ingest(upload(api, b"a\n2\n"))
    stored.clear()
    page = api.get("/api/datasets/?page_size=1").json()
    assert page["next"]
    assert api.get(page["next"]).status_code == 200
    assert len(stored) == 1  # the first page again (new list version); the cursor page: none
    assert first["results"]
