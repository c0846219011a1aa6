"""Optional API-key protection (LLM_MANAGER_API_KEY) for HTTP and WebSocket requests.

With no key configured everything is open, as the contract's development stage
says. With a key, `/api/`, `/v1/` and `/ws/` need `Authorization: Bearer KEY` or
`X-API-Key: KEY`; a signed-in staff user of the admin is let through as well, so
the operators' console never has to put the key in a page.
"""

from __future__ import annotations

import hmac
from importlib import import_module

from django.conf import settings
from django.contrib.auth import aget_user
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from core.api import database_unavailable, error_for_path
from core.db import DATABASE_ERRORS, is_unavailable
from core.middleware import HybridMiddleware

PROTECTED_PREFIXES = ("/api/", "/v1/", "/ws/")
OPEN_PATHS = frozenset({"/health", "/api/health"})
UNAUTHORIZED_MESSAGE = "A valid API key is required (Authorization: Bearer KEY or X-API-Key: KEY)"


def key_from_headers(authorization: str, x_api_key: str) -> str:
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return x_api_key.strip()


def is_valid_key(candidate: str) -> bool:
    return bool(candidate) and hmac.compare_digest(candidate.encode(), settings.API_KEY.encode())


def needs_key(path: str) -> bool:
    if path == "/metrics":
        return bool(settings.API_KEY) and not settings.METRICS_PUBLIC
    return bool(settings.API_KEY) and path.startswith(PROTECTED_PREFIXES) and path not in OPEN_PATHS


def unauthorized_response(path: str) -> HttpResponse:
    return error_for_path(path, "UNAUTHORIZED", UNAUTHORIZED_MESSAGE, 401)


class ApiKeyMiddleware(HybridMiddleware):
    """Behind AuthenticationMiddleware (the admin's stack) it reads the request's user; in the API's lean stack it
    reads the session cookie itself, and only for a request that brings no key."""

    def call(self, request: HttpRequest):
        if needs_key(request.path) and not _has_valid_key(request):
            user = getattr(request, "user", None)
            try:  # the session's user is read from the database here
                staff = bool(user and user.is_authenticated and user.is_staff)
            except DATABASE_ERRORS as exc:
                if not is_unavailable(exc):
                    raise
                return database_unavailable(request.path, exc)
            refused = self._staff_or_refusal(request, staff)
            if refused:
                return refused
        return self.get_response(request)

    async def acall(self, request: HttpRequest) -> HttpResponse:
        if needs_key(request.path) and not _has_valid_key(request):
            try:
                staff = await _is_staff_session(request)
            except DATABASE_ERRORS as exc:
                if not is_unavailable(exc):
                    raise
                return database_unavailable(request.path, exc)
            refused = self._staff_or_refusal(request, staff)
            if refused:
                return refused
        return await self.get_response(request)

    def _staff_or_refusal(self, request: HttpRequest, staff: bool) -> HttpResponse | None:
        if staff:
            # A cookie is sent by the browser on its own: writes need the CSRF token too.
            return CsrfViewMiddleware(self.get_response).process_view(request, None, (), {})
        return unauthorized_response(request.path)


def _has_valid_key(request: HttpRequest) -> bool:
    return is_valid_key(key_from_headers(request.headers.get("Authorization", ""), request.headers.get("X-API-Key", "")))


async def _is_staff_session(request: HttpRequest) -> bool:
    """Whether the request comes from a signed-in staff user of the admin."""
    if not hasattr(request, "auser"):  # the lean stack: no session middleware ran
        session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        if not session_key:
            return False
        request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        user = await aget_user(request)
    else:
        user = await request.auser()
    return bool(user.is_authenticated and user.is_staff)


class WebSocketApiKeyMiddleware:
    """ASGI middleware for WebSocket connections; expects the scope's user (AuthMiddlewareStack) inside it."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and needs_key(scope["path"]):
            headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
            key = key_from_headers(headers.get("authorization", ""), headers.get("x-api-key", ""))
            user = scope.get("user")
            staff = bool(user is not None and await _is_staff(user))
            if not (is_valid_key(key) or staff):
                await receive()  # the websocket.connect event
                await send({"type": "websocket.close", "code": 4401})
                return
        return await self.inner(scope, receive, send)


async def _is_staff(user) -> bool:
    from channels.db import database_sync_to_async

    return await database_sync_to_async(lambda: user.is_authenticated and user.is_staff)()
