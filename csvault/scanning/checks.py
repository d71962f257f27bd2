"""System checks for the malware scanner configuration (``manage.py check --deploy``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Error as CheckError
from django.core.checks import Warning as CheckWarning

from csvault.scanning.clamd import ClamdScanner


@register(Tags.security, deploy=True)
def check_malware_scanner(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Production without clamd scans with the minimal built-in matcher only: warn.

    A malformed ``CLAMD_URL`` is an error (every scan would fail, and uploads would pile
    up unscanned). Neither check contacts clamd; ``/readyz`` does.
    """
    url = settings.CLAMD_URL.strip()
    if url:
        try:
            ClamdScanner(url)
        except ValueError as exc:
            return [
                CheckError(
                    f"CLAMD_URL is malformed: {exc}",
                    hint="Use tcp://host:3310 or unix:///path/to/clamd.sock.",
                    id="csvault.E001",
                )
            ]
        return []
    if settings.EMBEDDED:
        return []
    return [
        CheckWarning(
            "CLAMD_URL is not set: uploads are scanned only by the minimal built-in "
            "signature matcher (the shipped .ndb/.hdb signatures; no heuristics, no archives).",
            hint="Run clamd (scripts/clamd.sh shows a configuration) and set "
            "CLAMD_URL=tcp://host:3310 or unix:///path/to/clamd.sock; see docs/security.md.",
            id="csvault.W001",
        )
    ]
