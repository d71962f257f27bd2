"""Celery signal handlers: task log context, task metrics and the worker's metrics exporter.

Connected once, from :meth:`csvault.core.apps.CoreConfig.ready`. Failures are counted
here but not logged: Celery logs each failed task once, with its traceback, and the
context filter gives that line its task and dataset ids.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from csvault.core import logs, metrics

logger = logging.getLogger(__name__)

#: Tasks whose first argument is a dataset id.
DATASET_TASKS = frozenset(
    {"csvault.scan_dataset", "csvault.ingest_dataset", "csvault.purge_dataset"}
)


def _task_name(sender: Any) -> str:
    return str(getattr(sender, "name", None) or "unknown")


@signals.task_prerun.connect
def _task_started(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    logs.task_id.set(task_id)
    dataset = args[0] if args and _task_name(task) in DATASET_TASKS else None
    logs.dataset_id.set(str(dataset) if dataset is not None else None)


@signals.task_postrun.connect
def _task_finished(
    task: Any = None, retval: Any = None, state: str | None = None, **_: Any
) -> None:
    name = _task_name(task)
    if state == "SUCCESS" and name in DATASET_TASKS and isinstance(retval, str):
        metrics.TASK_RESULTS.labels(task=name, result=retval).inc()
    logs.task_id.set(None)
    logs.dataset_id.set(None)


@signals.task_failure.connect
def _task_failed(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    kind = type(exception).__name__ if exception is not None else "unknown"
    metrics.TASK_FAILURES.labels(task=_task_name(sender), exception=kind).inc()


@signals.task_retry.connect
def _task_retried(sender: Any = None, **_: Any) -> None:
    metrics.TASK_RETRIES.labels(task=_task_name(sender)).inc()


@signals.worker_ready.connect
def _worker_ready(**_: Any) -> None:
    from django.conf import settings

    port = settings.CSVAULT_WORKER_METRICS_PORT
    if port:
        metrics.start_worker_exporter(port, settings.CSVAULT_WORKER_METRICS_ADDR)
