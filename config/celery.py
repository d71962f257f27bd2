"""The Celery application; configuration comes from Django settings (CELERY_*)."""

import os
from typing import Any

from celery import Celery

from config import bootstrap

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("csvault")


@app.on_configure.connect
def _prepare(sender: Celery, **kwargs: Any) -> None:
    # `celery -A config worker` (or beat) passes through neither manage.py nor wsgi.py;
    # its first read of the configuration loads the Django settings, before any task
    # code. Not at import: importing config.settings imports this module too.
    bootstrap.prepare()


app.config_from_object("django.conf:settings", namespace="CELERY")
# The tasks live in the worker pipeline, which is not a Django app of its own.
app.autodiscover_tasks(["csvault.pipeline"])

#: Task name -> queue suffix. Scans and ingests have their own queues so that
#: workers can be scaled per stage and a long ingest never delays a scan.
QUEUE_SUFFIXES = {
    "csvault.scan_dataset": "scan",
    "csvault.ingest_dataset": "ingest",
}


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
    """Celery router: ``<default queue>.<stage>`` for pipeline tasks, the default otherwise."""
    suffix = QUEUE_SUFFIXES.get(name)
    if suffix is None:
        return None
    return {"queue": f"{app.conf.task_default_queue}.{suffix}"}


def all_queues(base: str | None = None) -> list[str]:
    """Every queue a general-purpose worker consumes (what ``make worker`` passes to -Q)."""
    base = base or app.conf.task_default_queue
    return [base, *(f"{base}.{suffix}" for suffix in QUEUE_SUFFIXES.values())]
