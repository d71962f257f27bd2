from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "csvault.audit"
    label = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from csvault.audit import signals  # noqa: F401
