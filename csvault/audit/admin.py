from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from csvault.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: events are evidence, not data to edit."""

    list_display = ("at", "action", "username", "dataset_id", "ip")
    list_filter = ("action", "at")
    search_fields = ("username", "dataset_id", "ip")
    date_hierarchy = "at"
    readonly_fields = (
        "at",
        "action",
        "user",
        "username",
        "dataset_id",
        "ip",
        "user_agent",
        "detail",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
