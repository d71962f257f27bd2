"""Log context and formatters: every line carries the request, user, dataset and task it is about.

The context lives in :mod:`contextvars`, set by the request middleware
(:class:`csvault.core.middleware.RequestContextMiddleware`: request id, dataset id from
the URL, the user once authenticated) and by the Celery
``task_prerun``/``task_postrun`` handlers in :mod:`csvault.core.signals` (task id, dataset
id). :class:`ContextFilter` copies what is known onto each record; the formatters print it
as JSON fields (``LOG_FORMAT=json``, the default) or as ``key=value`` pairs after the
message (``LOG_FORMAT=plain``).

Only identifiers go into the context: never cell values, file content or credentials.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

#: The context fields, in the order the plain format prints them.
FIELDS = ("request_id", "user_id", "dataset_id", "task_id")

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
user_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)
dataset_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("dataset_id", default=None)
task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("task_id", default=None)
# The request being handled: its user is known only once DRF has authenticated it,
# which happens inside the view, so the filter looks it up when a line is logged.
current_request: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "current_request", default=None
)

_VARS: dict[str, contextvars.ContextVar[str | None]] = {
    "request_id": request_id,
    "user_id": user_id,
    "dataset_id": dataset_id,
    "task_id": task_id,
}


def _authenticated_user_id(request: Any) -> str | None:
    """The id of the request's user if authentication has already happened, without causing it.

    ``AuthenticationMiddleware`` puts a lazy object on the request; DRF replaces it with the
    authenticated user. Evaluating the lazy object here would run a session query from
    inside logging, so an unevaluated one counts as unknown.
    """
    from django.utils.functional import SimpleLazyObject, empty

    user = vars(request).get("user")
    if user is None:
        return None
    if isinstance(user, SimpleLazyObject):
        wrapped = user._wrapped  # type: ignore[attr-defined]
        if wrapped is empty:
            return None
        user = wrapped
    if not getattr(user, "is_authenticated", False):
        return None
    return str(user.pk)


def clear() -> None:
    """Forget the context (at the end of a request or a task)."""
    for var in _VARS.values():
        var.set(None)
    current_request.set(None)


def context() -> dict[str, str]:
    """The known context fields (unknown ones are left out)."""
    known = {name: value for name, var in _VARS.items() if (value := var.get()) is not None}
    if "user_id" not in known and (request := current_request.get()) is not None:
        uid = _authenticated_user_id(request)
        if uid is not None:
            known["user_id"] = uid
    return known


class ContextFilter(logging.Filter):
    """Adds the known context fields to every record (a record's own values win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            fields = context()
        except Exception:  # logging must never fail because of its context
            fields = {}
        for name, value in fields.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time, level, logger, message, context fields, exc_info."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")  # ISO 8601, UTC
        # Celery attaches its whole log context as ``data``; the useful parts (task
        # name and id) are already in the message and the context fields.
        kwargs.setdefault("reserved_attrs", [*_RESERVED, "data"])
        super().__init__(*args, **kwargs)


class PlainFormatter(logging.Formatter):
    """Human-readable lines for development: the message, then ``key=value`` context."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
        super().__init__(*args, **kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        pairs = [f"{name}={value}" for name in FIELDS if (value := getattr(record, name, None))]
        return f"{line} [{' '.join(pairs)}]" if pairs else line


def _reserved() -> list[str]:
    from pythonjsonlogger.core import RESERVED_ATTRS

    return list(RESERVED_ATTRS)


_RESERVED = _reserved()
