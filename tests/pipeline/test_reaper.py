"""What the reaper re-sends, in-process: its tasks are replaced by recorders."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from csvault.datasets.models import Dataset
from csvault.pipeline.reaper import datasets_reap
from tests.csvdata import to_csv, tricky_rows
from tests.helpers import free_port, upload

pytestmark = pytest.mark.django_db


class Recorder:
    """Stands in for a Celery task: records the ids it is sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[str] = []

    def delay(self, dataset_id: str) -> None:
        self.sent.append(dataset_id)


def reap() -> dict[str, Any]:
    tasks: dict[str, Any] = {stage: Recorder(stage) for stage in ("scan", "ingest", "purge")}
    datasets_reap(tasks=tasks)
    return {stage: task.sent for stage, task in tasks.items()}


def stalled_upload(api: Any) -> str:
    """A pending dataset whose scan message never arrived (uploaded an hour ago)."""
    dataset_id = upload(api, to_csv(tricky_rows(10))).json()["id"]
    Dataset.objects.filter(id=dataset_id).update(created_at=timezone.now() - timedelta(hours=1))
    return str(dataset_id)


def test_a_stalled_dataset_is_re_sent_once_per_stall_period(api):
    dataset_id = stalled_upload(api)
    assert reap() == {"scan": [dataset_id], "ingest": [], "purge": []}
    assert reap() == {"scan": [], "ingest": [], "purge": []}


def test_with_the_cache_down_the_reaper_still_re_sends(api, settings):
    # django-redis, told to ignore a Redis that is down (as production is), answers
    # None to every add: neither "added" nor "already there".
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 0.5},
        }
    }
    dataset_id = stalled_upload(api)
    assert reap()["scan"] == [dataset_id]
