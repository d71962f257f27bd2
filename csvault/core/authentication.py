"""Token authentication that answers from the cache after the first request.

A poll of a running ingest should not cost a database query per request, and
looking up the token is one. The cache holds, under a SHA-256 of the token (never
the token itself), only the user's id and name. Revocation stays immediate:
deleting a token (logout, admin) or saving its user (deactivation, say) drops
the entry through the signals below; an entry expires after five minutes anyway.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

TTL_SECONDS = 300


def _key(token_key: str) -> str:
    return "csvault:auth:" + hashlib.sha256(token_key.encode()).hexdigest()


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        hit = cache.get(_key(key))
        if hit is not None:
            # A user object for ids and names only; views never save request.user.
            user = get_user_model()(pk=hit["id"], username=hit["username"], is_active=True)
            user._state.adding = False
            user._state.db = "default"
            return user, Token(key=key, user_id=hit["id"])
        user, token = super().authenticate_credentials(key)  # 401 for unknown or inactive
        cache.set(_key(key), {"id": user.pk, "username": user.get_username()}, TTL_SECONDS)
        return user, token


@receiver(post_delete, sender=Token, dispatch_uid="csvault-token-deleted")
def _token_deleted(sender: Any, instance: Token, **kwargs: Any) -> None:
    cache.delete(_key(instance.key))


@receiver(post_save, sender=get_user_model(), dispatch_uid="csvault-user-saved")
def _user_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if created:
        return
    for key in Token.objects.filter(user_id=instance.pk).values_list("key", flat=True):
        cache.delete(_key(key))
