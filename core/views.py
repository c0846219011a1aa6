"""Fallback views that keep the envelope on paths and failures outside DRF views."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from core.api import error_json


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(("/api/", "/v1/"))


@csrf_exempt
def api_not_found(request: HttpRequest) -> HttpResponse:
    message = f"No endpoint at {request.path}"
    if request.path.startswith("/v1/"):
        # OpenAI clients read OpenAI's own error shape.
        return JsonResponse({"error": {"message": message, "type": "invalid_request_error", "code": "NOT_FOUND"}},
                            status=404)
    return error_json("NOT_FOUND", message, 404)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return error_json("INTERNAL_ERROR", "Internal server error", 500)
    return defaults.server_error(request)
