from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "csvault.core"
    label = "core"

    def ready(self) -> None:
        # Celery task signals: log context, task metrics, the worker metrics exporter.
        # Token cache invalidation on logout / user changes, in every process.
        from csvault.core import (
            authentication,  # noqa: F401
            signals,  # noqa: F401
        )

        # System checks register on import (``check --deploy`` warns without clamd).
        from csvault.scanning import checks  # noqa: F401
