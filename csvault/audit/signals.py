"""Audit events for Django's authentication signals (session logins, every failed login)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from csvault.audit.models import AuditAction
from csvault.audit.services import audit_record


@receiver(user_logged_in, dispatch_uid="csvault-audit-login")
def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit_record(AuditAction.LOGIN, request=request, user=user, via="session")


@receiver(user_login_failed, dispatch_uid="csvault-audit-login-failed")
def _login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    # ``credentials`` has the password masked; only the name tried is kept.
    username = str(credentials.get("username", ""))[:150]
    audit_record(AuditAction.LOGIN_FAILED, request=request, username=username)
