"""Liveness: the process answers. (Readiness of dependencies comes with /readyz.)"""

from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
