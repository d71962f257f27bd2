"""``manage.py readiness``: every readiness check with its details and reasons, as JSON."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from csvault.core.health import readiness


class Command(BaseCommand):
    help = (
        "Run the readiness checks of /readyz and print each part's details (exit 1 if any fails)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        ready, checks = readiness()
        self.stdout.write(json.dumps({"ready": ready, "checks": checks}, indent=2))
        if not ready:
            failing = ", ".join(name for name, entry in checks.items() if not entry["ok"])
            raise CommandError(f"not ready: {failing}")
