"""Who may call the API, with what scope, and how often: for HTTP and WebSocket requests.

Open while no key exists (the contract's development stage). Once LLM_MANAGER_API_KEY is set or a key is
created (`manage.py apikey create`, the console), `/api/`, `/v1/`, `/ws/` (and `/metrics`, unless
LLM_MANAGER_METRICS_PUBLIC) need `Authorization: Bearer KEY` or `X-API-Key: KEY`; a signed-in staff user of
the console is let through as well, so the console never puts a key in a page. Refusals: 401 UNAUTHORIZED
(none, unknown, revoked, expired: the message says which), 403 FORBIDDEN (a scope the key lacks), 429
RATE_LIMITED with Retry-After (over the key's requests or tokens per minute).

The proxy's hot path reads no database here when the key was seen in the last KEY_CACHE_SECONDS and has no
limits to count.
"""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from core import keys, ratelimit
from core.api import database_unavailable, error_for_path
from core.db import DATABASE_ERRORS, in_thread_pool, is_unavailable
from core.identity import Caller, current_caller
from core.middleware import HybridMiddleware

UNAUTHORIZED_MESSAGE = "A valid API key is required (Authorization: Bearer KEY or X-API-Key: KEY)"


def key_from_headers(authorization: str, x_api_key: str) -> str:
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return x_api_key.strip()


def client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")


class ApiKeyMiddleware(HybridMiddleware):
    """Behind AuthenticationMiddleware (the console's stack) it reads the request's user; in the API's lean stack
    it reads the session cookie itself, and only for a request that brings no key."""

    def call(self, request: HttpRequest):
        scope = keys.scope_for(request.path, request.method)
        if scope is None:
            if request.method == "POST":  # a console action: who did it
                _set_console_caller(request)
            return self.get_response(request)
        outcome = self._guarded(request, scope)
        if isinstance(outcome, HttpResponse):
            return outcome
        current_caller.set(outcome)
        return self.get_response(request)

    async def acall(self, request: HttpRequest) -> HttpResponse:
        scope = keys.scope_for(request.path, request.method)
        if scope is None:
            if request.method == "POST" and hasattr(request, "user"):  # a console action: who did it
                await in_thread_pool(_set_console_caller)(request)
            return await self.get_response(request)
        outcome = _from_caches(request, scope)
        if outcome is None:  # the database must be asked, or limits counted
            outcome = await in_thread_pool(self._guarded)(request, scope)
        if isinstance(outcome, HttpResponse):
            return outcome
        current_caller.set(outcome)
        return await self.get_response(request)

    def _guarded(self, request: HttpRequest, scope: str) -> Caller | HttpResponse:
        try:
            return self._authorized(request, scope)
        except DATABASE_ERRORS as exc:
            if not is_unavailable(exc):
                raise
            return database_unavailable(request.path, exc)

    def _authorized(self, request: HttpRequest, scope: str) -> Caller | HttpResponse:
        key = _presented_key(request)
        if key and keys.keys_required():
            try:
                found = keys.caller_for_key(key, client_ip(request))
            except keys.KeyRefused as refused:
                return error_for_path(request.path, "UNAUTHORIZED", str(refused), 401)
        else:
            found = self._session_caller(request)
            if isinstance(found, HttpResponse):
                return found
        return _refusal(request, found, scope) or _over_limit(request, found, scope) or found

    def _session_caller(self, request: HttpRequest) -> Caller | HttpResponse:
        user = _session_user(request)
        if _is_staff(user):
            # A cookie is sent by the browser on its own: writes need the CSRF token too.
            refused = CsrfViewMiddleware(self.get_response).process_view(request, None, (), {})
            return refused or _user_caller(request, user)
        if keys.keys_required():
            return error_for_path(request.path, "UNAUTHORIZED", UNAUTHORIZED_MESSAGE, 401)
        return Caller(name="anonymous", kind="anonymous", ip=client_ip(request))


def _presented_key(request: HttpRequest) -> str:
    return key_from_headers(request.headers.get("Authorization", ""), request.headers.get("X-API-Key", ""))


def _from_caches(request: HttpRequest, scope: str) -> Caller | HttpResponse | None:
    """The outcome from this process's caches alone (an open service, or a key seen lately with no limits to
    count); None when the database must be asked."""
    required = keys.cached_keys_required()
    if required is None:
        return None
    if not required:  # open: an operator's session still names who acts
        if hasattr(request, "user") or settings.SESSION_COOKIE_NAME in request.COOKIES:
            return None
        return Caller(name="anonymous", kind="anonymous", ip=client_ip(request))
    key = _presented_key(request)
    if not key:
        return None
    try:
        found = keys.cached_caller(key, client_ip(request))
    except keys.KeyRefused as refused:
        return error_for_path(request.path, "UNAUTHORIZED", str(refused), 401)
    if found is None or found.requests_per_minute or (scope == "inference" and found.tokens_per_minute):
        return None
    return _refusal(request, found, scope) or found


def _refusal(request: HttpRequest, found: Caller, scope: str) -> HttpResponse | None:
    if keys.scope_granted(found, scope, request.path):
        return None
    return error_for_path(request.path, "FORBIDDEN", f"The API key {found.name!r} lacks the `{scope}` scope this "
                          "request needs", 403, {"scope": scope} if not request.path.startswith("/v1/") else None)


def _over_limit(request: HttpRequest, found: Caller, scope: str) -> HttpResponse | None:
    """Counts the request against the key's requests per minute; refuses it when that, or (for inference) the
    tokens of this minute, is over the key's limit."""
    counter = ratelimit.counter()
    limit, figure = found.requests_per_minute, "requests"
    over = limit and counter.add(found.key_id, figure, 1) > limit
    if not over and scope == "inference" and found.tokens_per_minute:
        limit, figure = found.tokens_per_minute, "tokens"
        over = counter.used(found.key_id, figure) >= limit
    if not over:
        return None
    wait = ratelimit.seconds_left_in_minute()
    refused = error_for_path(request.path, "RATE_LIMITED", f"The API key {found.name!r} is over its limit of {limit} "
                             f"{figure} per minute; retry in {wait} s", 429)
    refused["Retry-After"] = str(wait)
    return refused


def _session_user(request: HttpRequest):
    """The console user of the request's session, if any."""
    if hasattr(request, "user"):
        return request.user
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not session_key:  # the lean stack, and no session
        return None
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return get_user(request)


def _is_staff(user) -> bool:
    return user is not None and user.is_authenticated and user.is_staff


def _user_caller(request: HttpRequest, user) -> Caller:
    return Caller(name=user.get_username(), kind="user", ip=client_ip(request))


def _set_console_caller(request: HttpRequest) -> None:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        current_caller.set(_user_caller(request, user))


class WebSocketApiKeyMiddleware:
    """ASGI middleware for WebSocket connections (the `read` scope); expects the scope's user
    (AuthMiddlewareStack) inside it."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and keys.scope_for(scope["path"], "GET"):
            headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
            key = key_from_headers(headers.get("authorization", ""), headers.get("x-api-key", ""))
            if not await in_thread_pool(_may_watch)(key, scope.get("user")):
                await receive()  # the websocket.connect event
                await send({"type": "websocket.close", "code": 4401})
                return
        return await self.inner(scope, receive, send)


def _may_watch(key: str, user) -> bool:
    if not keys.keys_required() or _is_staff(user):
        return True
    try:
        found = keys.caller_for_key(key, "") if key else None
    except keys.KeyRefused:
        return False
    return found is not None and keys.scope_granted(found, "read", "/ws/")
