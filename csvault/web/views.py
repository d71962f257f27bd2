"""The web app: log in with a password, upload, follow, read, export, cancel, delete.

The pages are static HTML shells + small scripts (``static/web/``) that talk to the
same JSON API as every other client, authenticated by the session (with Django's
CSRF token). No data is rendered on the server: a dataset page is a shell for an id,
and the script's API calls decide (404 for an absent or another user's dataset).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from csvault.core.throttling import ScopedUserThrottle


@login_required
@ensure_csrf_cookie
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "web/home.html", {"max_upload": settings.CSVAULT_MAX_UPLOAD_BYTES})


@login_required
@ensure_csrf_cookie
def dataset_page(request: HttpRequest, dataset_id: uuid.UUID) -> HttpResponse:
    return render(request, "web/dataset.html", {"dataset_id": dataset_id})


class _LoginScope:
    throttle_scope = "login"


def login_wait(request: HttpRequest) -> int | None:
    """Seconds to wait when this address is over the login throttle (the API's ``login``
    scope, shared by every login form), else None. Failed logins are audited by the
    ``user_login_failed`` signal, whichever form sent them."""
    throttle = ScopedUserThrottle()
    if throttle.allow_request(request, _LoginScope()):  # type: ignore[arg-type]
        return None
    return max(1, int(throttle.wait() or 60))


def throttled_sentence(wait: int) -> str:
    return f"Too many login attempts from your address. Try again in {wait} seconds."


def _throttled(response: HttpResponse, wait: int) -> HttpResponse:
    response.status_code = 429
    response["Retry-After"] = str(wait)
    return response


class LoginView(auth_views.LoginView):
    """Django's login page, with the API's per-address login throttle; a throttled
    attempt gets the form again with a sentence saying how long to wait."""

    template_name = "web/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = login_wait(request)
        if wait is None:
            return super().post(request, *args, **kwargs)
        context = self.get_context_data(form=self.get_form_class()(request))
        context["throttled"] = throttled_sentence(wait)
        return _throttled(self.render_to_response(context), wait)


def admin_login(request: HttpRequest, extra_context: Any = None) -> HttpResponse:
    """The admin's login, behind the same throttle as every other login form."""
    from django.contrib import admin

    if request.method == "POST" and (wait := login_wait(request)) is not None:
        context = {"message": throttled_sentence(wait), "retry": request.get_full_path()}
        return _throttled(render(request, "web/throttled.html", context), wait)
    return admin.site.login(request, extra_context)
