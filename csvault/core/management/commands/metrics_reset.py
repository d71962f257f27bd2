"""``manage.py metrics_reset``: empty the prometheus_client multiprocess directory.

Run it when no csvault process on this host is running (``make run`` does, before it
starts the web server and the worker): metric files of processes that are gone would
otherwise pile up, and a gauge's or counter's restart is what Prometheus expects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Delete the metric files in PROMETHEUS_MULTIPROC_DIR (only when csvault is stopped)."

    def handle(self, *args: Any, **options: Any) -> None:
        folder = Path(settings.PROMETHEUS_MULTIPROC_DIR)
        # Only prometheus_client's own files: the directory may be shared or mistyped.
        removed = 0
        for path in folder.glob("*.db"):
            path.unlink(missing_ok=True)
            removed += 1
        self.stdout.write(f"removed {removed} metric files from {folder}")
