"""Malware scanning: a scanner protocol, a clamd client and a minimal built-in matcher.

Production scans with clamd (``CLAMD_URL``); embedded mode, with no clamd, uses the
built-in matcher over the signature directory, which is labelled minimal wherever it is
reported. Both fail closed: no definite verdict raises :class:`ScannerUnavailable`.
"""

from __future__ import annotations

import functools
from pathlib import Path

from csvault.scanning.base import (
    LIMITS_SIGNATURE_PREFIX,
    SIZE_LIMIT_SIGNATURE,
    Scanner,
    ScannerUnavailable,
    ScanResult,
)
from csvault.scanning.builtin import SignatureScanner
from csvault.scanning.clamd import ClamdScanner

__all__ = [
    "LIMITS_SIGNATURE_PREFIX",
    "SIZE_LIMIT_SIGNATURE",
    "ClamdScanner",
    "ScanResult",
    "Scanner",
    "ScannerUnavailable",
    "SignatureScanner",
    "get_scanner",
    "scanner_from_settings",
]


def scanner_from_settings(
    clamd_url: str | None, signatures_dir: Path, *, timeout: float = 60.0
) -> Scanner:
    """The configured scanner: clamd when ``clamd_url`` is set (non-empty), else built-in.

    Raises ValueError for a malformed ``clamd_url`` or, without one, a signature directory
    with no usable signatures. Neither contacts clamd; call ``ping()`` for readiness.
    """
    if clamd_url and clamd_url.strip():
        return ClamdScanner(clamd_url, timeout=timeout)
    return SignatureScanner(signatures_dir)


def get_scanner() -> Scanner:
    """The scanner configured in settings (``CLAMD_URL``, ``CSVAULT_SIGNATURES_DIR``).

    Cached per configuration, so settings overrides in tests take effect.
    """
    from django.conf import settings

    return _scanner_for(
        settings.CLAMD_URL, str(settings.CSVAULT_SIGNATURES_DIR), settings.CSVAULT_SCAN_TIMEOUT
    )


@functools.lru_cache(maxsize=4)
def _scanner_for(clamd_url: str, signatures_dir: str, timeout: float) -> Scanner:
    return scanner_from_settings(clamd_url, Path(signatures_dir), timeout=timeout)
