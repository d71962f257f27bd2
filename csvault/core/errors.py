"""The application's error types; one exception handler turns them into JSON."""

from __future__ import annotations

from typing import Any


class CsvaultError(Exception):
    """Base of every error csvault reports to a client.

    ``code`` is machine-readable, ``message`` is a sentence a person can act on,
    ``extra`` adds fields such as ``row`` and ``column`` to the JSON error.
    """

    status_code = 400
    default_code = "invalid"

    def __init__(
        self, message: str, *, code: str | None = None, status_code: int | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


class UploadRejected(CsvaultError):
    """The upload itself is refused (too large, not CSV, empty...)."""


class StorageUnavailable(CsvaultError, OSError):
    """The file store cannot be reached or refuses the request (an ``OSError``, so the
    worker's tasks retry it). The message names no address and no data."""

    status_code = 503
    default_code = "storage_unavailable"


class NotReady(CsvaultError):
    """The dataset exists but is not in a state that allows the request."""

    status_code = 409
    default_code = "not_ready"


class QuotaExceeded(CsvaultError):
    """The caller's quota does not allow this (stored bytes, or work in progress).

    ``retry_after`` (seconds), when set, is sent as a Retry-After header.
    """

    status_code = 403
    default_code = "quota_exceeded"

    def __init__(self, message: str, *, retry_after: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
