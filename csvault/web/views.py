"""The upload page: log in with a password, upload, watch progress, export, delete.

The page itself is static HTML + a small script that talks to the same JSON API
as every other client, authenticated by the session (with Django's CSRF token).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from csvault.core.throttling import ScopedUserThrottle


@login_required
@ensure_csrf_cookie
def home(request: HttpRequest) -> HttpResponse:
    from django.conf import settings

    return render(request, "web/home.html", {"max_upload": settings.CSVAULT_MAX_UPLOAD_BYTES})


class _LoginScope:
    throttle_scope = "login"


def login_throttled(request: HttpRequest) -> HttpResponse | None:
    """A 429 when this address is over the login throttle (the API's ``login`` scope,
    shared by every login form), else None. Failed logins are audited by the
    ``user_login_failed`` signal, whichever form sent them."""
    throttle = ScopedUserThrottle()
    if throttle.allow_request(request, _LoginScope()):  # type: ignore[arg-type]
        return None
    wait = int(throttle.wait() or 60)
    response = JsonResponse(
        {"error": {"code": "throttled", "message": f"Too many attempts; retry in {wait} s."}},
        status=429,
    )
    response["Retry-After"] = str(wait)
    return response


class LoginView(auth_views.LoginView):
    """Django's login page, with the API's per-address login throttle."""

    template_name = "web/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return login_throttled(request) or super().post(request, *args, **kwargs)


def admin_login(request: HttpRequest, extra_context: Any = None) -> HttpResponse:
    """The admin's login, behind the same throttle as every other login form."""
    from django.contrib import admin

    if request.method == "POST" and (refused := login_throttled(request)) is not None:
        return refused
    return admin.site.login(request, extra_context)
