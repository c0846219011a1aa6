"""Fallback views that keep the envelope on paths and failures outside DRF views."""

from django.http import HttpRequest, HttpResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from core.api import error_for_path, is_api_path


@csrf_exempt
def api_not_found(request: HttpRequest) -> HttpResponse:
    return error_for_path(request.path, "NOT_FOUND", f"No endpoint at {request.path}", 404)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_path(request.path):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if is_api_path(request.path):
        return error_for_path(request.path, "INTERNAL_ERROR", "Internal server error", 500)
    return defaults.server_error(request)
