"""The master keyring configured for this process (from ``CSVAULT_MASTER_KEYS``)."""

from __future__ import annotations

import functools

from django.conf import settings

from csvault.crypto.keyring import Keyring, parse_master_keys


@functools.lru_cache(maxsize=4)
def _keyring_for(spec: str) -> Keyring:
    return parse_master_keys(spec)


def get_keyring() -> Keyring:
    """Return the keyring; cached per spec so settings overrides in tests take effect."""
    return _keyring_for(settings.CSVAULT_MASTER_KEYS)
