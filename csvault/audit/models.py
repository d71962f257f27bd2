"""Audit events: who did what to which dataset, when and from where; never cell values."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditAction(models.TextChoices):
    LOGIN = "login", "Logged in"
    LOGIN_FAILED = "login_failed", "Login failed"
    LOGOUT = "logout", "Logged out"
    UPLOAD = "upload", "Uploaded"
    UPLOAD_REFUSED = "upload_refused", "Upload refused"
    SCAN_CLEAN = "scan_clean", "Scan: clean"
    SCAN_REJECTED = "scan_rejected", "Scan: rejected"
    SCAN_FAILED = "scan_failed", "Scan: scanner unavailable"
    EXPORT = "export", "Exported"
    CANCEL = "cancel", "Cancelled"
    DELETE = "delete", "Deleted"
    ACCESS_DENIED = "access_denied", "Access denied"


class AuditEvent(models.Model):
    """One security-relevant event. Rows are only ever added (the admin is read-only).

    ``dataset_id`` is a plain UUID, not a foreign key, so events outlive the dataset;
    ``username`` is kept as it was at the time. ``detail`` holds metadata only (codes,
    sizes, signature names), never file content or cell values.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    username = models.CharField(max_length=150, blank=True)
    dataset_id = models.UUIDField(null=True, blank=True, db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["user", "-at"], name="audit_user_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or '-'} {self.action}"
