"""The base of the project's middlewares: sync or async, as the stack around them is."""

from __future__ import annotations

from typing import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from core.api import (
    DATABASE_RETRY_SECONDS,
    DATABASE_UNAVAILABLE_MESSAGE,
    database_unavailable,
    error_for_path,
    is_api_path,
)
from core.db import is_unavailable


class HybridMiddleware:
    """A middleware Django runs in either stack without an adapter: `__call__` handles a sync request and hands an
    async one to `__acall__` (the subclass's `acall`)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self.acall(request)
        return self.call(request)

    def call(self, request: HttpRequest):
        raise NotImplementedError

    async def acall(self, request: HttpRequest):
        raise NotImplementedError


class BodyLimitMiddleware(HybridMiddleware):
    """A request body over LLM_MANAGER_MAX_BODY_MB is refused with 413 PAYLOAD_TOO_LARGE before it is parsed."""

    def call(self, request: HttpRequest):
        return self._refusal(request) or self.get_response(request)

    async def acall(self, request: HttpRequest):
        return self._refusal(request) or await self.get_response(request)

    @staticmethod
    def _refusal(request: HttpRequest) -> JsonResponse | None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = settings.MAX_BODY_BYTES + 1  # unreadable: refused as too large rather than read blindly
        limit = settings.MAX_BODY_BYTES
        if length <= limit:
            return None
        message = f"The request body has {length} bytes; at most {limit} are taken (LLM_MANAGER_MAX_BODY_MB)"
        return error_for_path(request.path, "PAYLOAD_TOO_LARGE", message, 413, {"max_bytes": limit})


class DatabaseOutageMiddleware(HybridMiddleware):
    """A view the database failed (down, restarting, locked) answers 503 DATABASE_UNAVAILABLE, not a 500: the API
    in its envelope (DRF views do the same in core.api.exception_handler), the console as a plain page."""

    def call(self, request: HttpRequest):
        return self.get_response(request)

    async def acall(self, request: HttpRequest):
        return await self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_unavailable(exception):
            return None
        if is_api_path(request.path):
            return database_unavailable(request.path, exception)
        response = HttpResponse(DATABASE_UNAVAILABLE_MESSAGE, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(DATABASE_RETRY_SECONDS)
        return response
