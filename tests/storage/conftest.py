"""An S3 server for the storage tests: the session's own (CSVAULT_TEST_STORAGE=s3), or
one started here; each test gets a new bucket and a store on it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from config import pytest_plugin
from config.storage import datasets_storage


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pytest_plugin.MotoServer]:
    if pytest_plugin._s3 is not None:
        yield pytest_plugin._s3
        return
    server = pytest_plugin.MotoServer(str(tmp_path_factory.mktemp("moto") / "moto.log"))
    try:
        yield server
    finally:
        server.stop()


def s3_env(server: pytest_plugin.MotoServer, bucket: str) -> dict[str, str]:
    """The environment a csvault process needs to use ``bucket`` on ``server``."""
    return {
        "STORAGE_URL": f"s3://{bucket}/files",
        "AWS_S3_ENDPOINT_URL": server.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_S3_REGION_NAME": "us-east-1",
    }


def s3_storage_settings(endpoint: str, bucket: str, **options: Any) -> dict[str, Any]:
    return datasets_storage(
        f"s3://{bucket}/files",
        endpoint_url=endpoint,
        access_key="testing",
        secret_key="testing",
        **options,
    )


@pytest.fixture
def bucket(s3_server: pytest_plugin.MotoServer) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3_server.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
    return name


@pytest.fixture
def s3(settings: Any, s3_server: pytest_plugin.MotoServer, bucket: str) -> Any:
    """The dataset store, switched to a new bucket for this test."""
    from csvault.core.storage import dataset_storage

    settings.STORAGES = {
        **settings.STORAGES,
        "datasets": s3_storage_settings(s3_server.url, bucket),
    }
    return dataset_storage()
