"""Log in (get an API token) and log out (revoke it)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import logout
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from csvault.audit.models import AuditAction
from csvault.audit.services import audit_record
from csvault.core.throttling import ScopedUserThrottle


class LoginApi(ObtainAuthToken):
    """``POST username, password``: the user's API token (the same one until logout)."""

    throttle_scope = "login"
    throttle_classes: list[type[BaseThrottle]] = [ScopedUserThrottle]

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        # A wrong password is audited by the user_login_failed signal (csvault.audit.signals).
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        token, _ = Token.objects.get_or_create(user=user)
        audit_record(AuditAction.LOGIN, request=request, user=user, via="token")
        return Response({"token": token.key})


class LogoutApi(APIView):
    """``POST``: revoke the token used (and end a browser session); effective at once."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        user = request.user
        if isinstance(request.auth, Token):
            request.auth.delete()
        logout(request._request)
        audit_record(AuditAction.LOGOUT, request=request, user=user)
        return Response(status=status.HTTP_204_NO_CONTENT)
