from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "csvault.core"
    label = "core"

    def ready(self) -> None:
        # Celery task signals: log context, task metrics, the worker metrics exporter.
        from csvault.core import signals  # noqa: F401
