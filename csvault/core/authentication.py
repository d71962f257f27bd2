"""Token authentication that answers from the cache after the first request.

A poll of a running ingest should not cost a database query per request, and
looking up the token is one. The cache holds, under a SHA-256 of the token (never
the token itself), only the user's id and name. Revocation stays immediate:
deleting a token (logout, admin) or saving its user (deactivation, say) replaces
the entry with a tombstone through the signals below. Paths that bypass the signals
(``User.objects.filter(...).update(is_active=False)``, SQL) take effect when the entry
expires: ``CSVAULT_AUTH_CACHE_SECONDS`` (5 s), so a client polling every second still
costs one token query per five polls.

Why a tombstone and not a delete: a request that read the token from the
database just before a logout committed would otherwise put it back in the
cache after the logout cleared it, and the revoked token would keep working for
the entry's lifetime. Requests fill the cache with ``add`` (only if the key is
absent), so while the tombstone lives nobody can, and every request goes to the
database, which answers 401.

Beside that entry, :func:`user_id_key` holds the user's id alone, as a plain integer
(django-redis stores integers unpickled), filled and tombstoned (``0``) together with
it: the hot reads (csvault/datasets/hotreads.py) read it inside Redis, in the same
round trip as the throttle and the cached answer.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

# Longer than any request takes between its database read and its cache fill.
TOMBSTONE_SECONDS = 60
_TOMBSTONE = {"revoked": True}


def _key(token_key: str) -> str:
    return "csvault:auth:" + _digest(token_key)


def user_id_key(token_key: str) -> str:
    """The key of the token's user id (0: revoked), beside the entry of :func:`_key`."""
    return "csvault:authuid:" + _digest(token_key)


def _digest(token_key: str) -> str:
    return hashlib.sha256(token_key.encode()).hexdigest()


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        hit = cache.get(_key(key))
        if hit is not None and "id" in hit:
            # A user object for ids and names only; views never save request.user.
            user = get_user_model()(pk=hit["id"], username=hit["username"], is_active=True)
            user._state.adding = False
            user._state.db = "default"
            return user, Token(key=key, user_id=hit["id"])
        user, token = super().authenticate_credentials(key)  # 401 for unknown or inactive
        remember_token(key, user.pk, user.get_username())
        return user, token


def active_token_user(key: str) -> tuple[int, str] | None:
    """The id and name of the token's user if both exist and the user is active (what
    DRF's token check accepts), from the database; else None."""
    found = (
        Token.objects.filter(key=key)
        .values_list("user_id", "user__username", "user__is_active")
        .first()
    )
    if found is None or not found[2]:
        return None
    return int(found[0]), str(found[1])


def remember_token(key: str, user_id: int, username: str) -> None:
    """Cache a token just checked in the database (``add``: a tombstone stays)."""
    ttl = settings.CSVAULT_AUTH_CACHE_SECONDS
    cache.add(_key(key), {"id": user_id, "username": username}, ttl)
    cache.add(user_id_key(key), int(user_id), ttl)


@receiver(post_delete, sender=Token, dispatch_uid="csvault-token-deleted")
def _token_deleted(sender: Any, instance: Token, **kwargs: Any) -> None:
    cache.set_many(_tombstones([instance.key]), TOMBSTONE_SECONDS)


@receiver(post_save, sender=get_user_model(), dispatch_uid="csvault-user-saved")
def _user_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if created:
        return
    keys = Token.objects.filter(user_id=instance.pk).values_list("key", flat=True)
    cache.set_many(_tombstones(keys), TOMBSTONE_SECONDS)


def _tombstones(token_keys: Any) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    for key in token_keys:
        entries[_key(key)] = _TOMBSTONE
        entries[user_id_key(key)] = 0
    return entries
