"""The dataset store, local and S3 (moto's real HTTP server): files move as streams,
are invisible until committed, and leave nothing behind when aborted or deleted."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from config.storage import datasets_storage
from csvault.core.errors import StorageUnavailable
from csvault.core.s3storage import PART_BYTES
from csvault.core.storage import LocalWrite, dataset_storage
from tests.helpers import free_port, stored_names
from tests.storage.conftest import s3_storage_settings


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> Any:
    if request.param == "s3":
        return request.getfixturevalue("s3")
    settings.STORAGES = {
        **settings.STORAGES,
        "datasets": datasets_storage(f"file://{tmp_path / 'files'}"),
    }
    return dataset_storage()


def write(store: Any, name: str, data: bytes, step: int = 1_000_003) -> Any:
    out = store.open_write(name)
    for start in range(0, len(data), step):
        out.write(data[start : start + step])
    return out


def read(store: Any, name: str, step: int = 777_777) -> bytes:
    got = bytearray()
    with store.open(name, "rb") as fh:
        while chunk := fh.read(step):
            got += chunk
    return bytes(got)


def test_a_file_of_several_parts_is_invisible_until_committed_then_reads_back(store: Any) -> None:
    data = os.urandom(2 * PART_BYTES + 12_345)
    out = write(store, "datasets/a.csvf", data)
    assert "datasets/a.csvf" not in stored_names()
    assert not store.exists("datasets/a.csvf")
    out.commit()
    assert "datasets/a.csvf" in stored_names()
    assert read(store, "datasets/a.csvf") == data


@pytest.mark.parametrize("size", [0, 1, 100_000])
def test_small_and_empty_files_read_back(store: Any, size: int) -> None:
    data = os.urandom(size)
    write(store, "datasets/small.csvf", data).commit()
    assert read(store, "datasets/small.csvf") == data


def test_an_aborted_file_leaves_nothing(store: Any) -> None:
    out = write(store, "datasets/b.csvf", os.urandom(PART_BYTES + 10))
    assert stored_names() != set()  # a .part file, or an unfinished multipart upload
    out.abort()
    assert stored_names() == set()


def test_delete_removes_the_file_and_an_unfinished_upload_of_its_name(store: Any) -> None:
    write(store, "datasets/c.csvf", b"committed").commit()
    unfinished = write(store, "datasets/d.csvf", os.urandom(PART_BYTES + 10))
    store.delete("datasets/c.csvf")
    store.delete("datasets/d.csvf")
    names = stored_names()
    assert not {n for n in names if not n.startswith("datasets/d.csvf.part-")}
    unfinished.abort()
    assert stored_names() == set()


def test_a_missing_file_is_file_not_found(store: Any) -> None:
    with pytest.raises(FileNotFoundError):
        store.open("datasets/absent.csvf", "rb")


def test_a_read_resumes_from_its_offset_after_the_connection_drops(s3: Any) -> None:
    data = os.urandom(3 * 1024 * 1024)
    write(s3, "datasets/e.csvf", data).commit()
    requested: list[str] = []
    get_object = s3.client.get_object

    def counted(**kwargs: Any) -> Any:
        requested.append(kwargs["Range"])
        return get_object(**kwargs)

    s3.client.get_object = counted
    try:
        with s3.open("datasets/e.csvf", "rb") as fh:
            first = fh.read(100_000)
            raw = fh.file.raw
            dropped_at = raw.pos
            raw.body.close()  # the connection drops mid-object
            rest = fh.read()
    finally:
        del s3.client.get_object
    assert first + rest == data
    assert 0 < dropped_at < len(data)
    assert requested == ["bytes=0-", f"bytes={dropped_at}-"]


def test_an_unreachable_store_is_storage_unavailable_naming_no_address(settings: Any) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    settings.STORAGES = {
        **settings.STORAGES,
        "datasets": s3_storage_settings(endpoint, "nowhere", connect_timeout=1),
    }
    store = dataset_storage()
    for attempt in (
        lambda: store.open("datasets/x.csvf", "rb"),
        lambda: write(store, "datasets/x.csvf", b"x").commit(),
        lambda: store.delete("datasets/x.csvf"),
        store.ping,
    ):
        with pytest.raises(StorageUnavailable) as caught:
            attempt()
        assert isinstance(caught.value, OSError)  # the worker's tasks retry it
        assert "127.0.0.1" not in str(caught.value)
        assert endpoint.rsplit(":", 1)[1] not in str(caught.value)


def test_the_sweep_removes_unfinished_writes_left_long_ago(store: Any) -> None:
    write(store, "datasets/kept.csvf", b"committed").commit()
    left = write(store, "datasets/left.csvf", os.urandom(PART_BYTES + 10))
    assert store.sweep_unfinished(older_than=3600) in (0, 1)  # moto dates every upload 2010
    if isinstance(left, LocalWrite):
        assert store.sweep_unfinished(older_than=3600) == 0  # written just now: kept
        os.utime(left.part, (time.time() - 7200, time.time() - 7200))
        assert store.sweep_unfinished(older_than=3600) == 1
    else:
        store.sweep_unfinished(older_than=0)
    assert stored_names() == {"datasets/kept.csvf"}


@pytest.mark.django_db
def test_the_reaper_sweeps_at_most_once_per_period(store: Any) -> None:
    from django.core.cache import cache

    from csvault.pipeline.reaper import unfinished_uploads_sweep

    def left_long_ago(name: str) -> None:
        # Past one part: on S3 a multipart upload is under way (moto dates it 2010).
        left = write(store, name, os.urandom(PART_BYTES + 10))
        if isinstance(left, LocalWrite):
            os.utime(left.part, (time.time() - 7200, time.time() - 7200))

    cache.delete("swept-unfinished-uploads")
    left_long_ago("datasets/old.csvf")
    assert unfinished_uploads_sweep() == 1
    left_long_ago("datasets/later.csvf")
    assert unfinished_uploads_sweep() == 0  # not again within the period
    assert any(name.startswith("datasets/later.csvf") for name in stored_names())
