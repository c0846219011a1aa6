"""A Django ASGI handler with a short middleware stack, for the API.

Under ASGI each of the admin's middlewares (security, sessions, common, CSRF, auth,
messages, clickjacking) costs thread hops on every request; the JSON API needs none of
them. The API-key check resolves an operator's session itself, only when a request
carries no key (see core.auth).
"""

from __future__ import annotations

from django.core.handlers.asgi import ASGIHandler
from django.test.utils import override_settings

LEAN_PREFIXES = ("/api/", "/v1/", "/health")
# Async views whose few sync calls (the signals' connection cleanup, a cached lookup) are quick.
PROXY_PREFIXES = ("/v1/", "/api/chat/", "/api/completions/")
# Pages for people, not programs: the full stack (trailing-slash redirects, security headers).
FULL_STACK_PREFIXES = ("/api/docs", "/api/schema")
LEAN_MIDDLEWARE = ["core.logs.RequestIdMiddleware", "core.middleware.BodyLimitMiddleware",
                   "core.auth.ApiKeyMiddleware", "core.middleware.DatabaseOutageMiddleware"]


def is_lean(path: str) -> bool:
    return path.startswith(LEAN_PREFIXES) and not path.startswith(FULL_STACK_PREFIXES)


class ProxyASGIHandler(ASGIHandler):
    """For the inference proxy: no per-request ThreadSensitiveContext.

    Django gives each request a context of its own, so that its sync code gets a thread of its own:
    a new thread per request. The proxy's views are async; their few sync calls share one thread.
    """

    async def __call__(self, scope, receive, send):
        await self.handle(scope, receive, send)


def lean_asgi_application(handler_class: type[ASGIHandler] = ASGIHandler) -> ASGIHandler:
    """The same URLs and views as the main application, behind LEAN_MIDDLEWARE only (loaded once, here)."""
    with override_settings(MIDDLEWARE=LEAN_MIDDLEWARE):
        return handler_class()
