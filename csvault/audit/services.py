"""Recording audit events from views (with the request) and from tasks (without)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from csvault.audit.models import AuditEvent

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest) -> str | None:
    """The client address, by the throttles' rule: ``REMOTE_ADDR``, or behind
    ``CSVAULT_TRUSTED_PROXIES`` = N proxies the N-th address from the end of
    X-Forwarded-For (the one the outermost trusted proxy saw); never an address a
    client could have written itself."""
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = int(settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0)  # CSVAULT_TRUSTED_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if not proxies or not forwarded:
        return remote
    addresses = forwarded.split(",")
    return addresses[-min(proxies, len(addresses))].strip() or remote


def audit_record(
    action: str,
    *,
    request: HttpRequest | None = None,
    user: Any = None,
    user_id: int | None = None,
    username: str = "",
    dataset_id: uuid.UUID | str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Add one event. ``user`` defaults to the request's authenticated user."""
    if user is None and request is not None:
        candidate = getattr(request, "user", None)
        if candidate is not None and candidate.is_authenticated:
            user = candidate
    if user is None and user_id is not None:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(pk=user_id).first()
    event = AuditEvent.objects.create(
        action=action,
        user=user,
        username=username or (user.get_username() if user is not None else ""),
        dataset_id=dataset_id,
        ip=client_ip(request) if request is not None else None,
        user_agent=(request.META.get("HTTP_USER_AGENT", "")[:255] if request is not None else ""),
        detail=detail,
    )
    logger.info("audit %s user=%s dataset=%s", action, event.username or "-", dataset_id or "-")
    return event
