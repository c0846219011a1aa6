"""A Django ASGI handler with a short middleware stack, for the API.

Under ASGI each of the admin's middlewares (security, sessions, common, CSRF, auth,
messages, clickjacking) costs thread hops on every request; the JSON API needs none of
them. The API-key check resolves an operator's session itself, only when a request
carries no key (see core.auth).
"""

from __future__ import annotations

import asyncio
import contextlib

from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http.response import HttpResponseBase
from django.test.utils import override_settings
from django.urls import set_script_prefix

LEAN_PREFIXES = ("/api/", "/v1/", "/health")
# Async views, whose database access goes through the thread pool (core.db.in_thread_pool): see ProxyASGIHandler.
PROXY_PREFIXES = ("/v1/", "/api/chat/", "/api/completions/", "/api/embeddings/")
# Pages for people, not programs: the full stack (trailing-slash redirects, security headers).
FULL_STACK_PREFIXES = ("/api/docs", "/api/schema")
LEAN_MIDDLEWARE = ["core.logs.RequestIdMiddleware", "core.middleware.BodyLimitMiddleware",
                   "core.auth.ApiKeyMiddleware", "core.middleware.DatabaseOutageMiddleware"]


def is_lean(path: str) -> bool:
    return path.startswith(LEAN_PREFIXES) and not path.startswith(FULL_STACK_PREFIXES)


class ProxyASGIHandler(ASGIHandler):
    """For the inference proxy: no thread of its own per request, no thread hops for the request signals.

    Django gives each request a context of its own, so that its sync code gets a thread of its own (a new
    thread per request), and sends `request_started` and `request_finished` through `sync_to_async` (two
    thread hops per request), so that their receivers close that thread's database connections. The proxy's
    views are async and reach the database only through `core.db.in_thread_pool`, whose threads check their
    own connections; here the signals are sent on the event loop's thread, where no connection is ever open.
    The rest is Django's: the body read, the request made, the response sent, and a caller who leaves cancels
    the view (a stream stops, and so does the engine's generation).
    """

    async def __call__(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with body_file:
            set_script_prefix(get_script_prefix(scope))
            signals.request_started.send(sender=self.__class__, scope=scope)
            request, response = self.create_request(scope, body_file)
            if request is None:
                await self.send_response(response, send)
            else:
                response = await self._unless_caller_leaves(request, receive, send)
            if response is None:
                signals.request_finished.send(sender=self.__class__)
            else:
                response.close()  # sends request_finished

    async def _unless_caller_leaves(self, request, receive, send) -> HttpResponseBase | None:
        """The response sent, or None when the caller left first (the view is cancelled)."""

        async def answer() -> HttpResponseBase:
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:  # the caller left while it was sent
                pass
            return response

        answering = asyncio.create_task(answer())
        listening = asyncio.create_task(self.listen_for_disconnect(receive))
        await asyncio.wait((answering, listening), return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if not answering.done():
            answering.cancel()
        try:
            await answering
        except asyncio.CancelledError:
            return None
        finally:
            with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                await listening
        return answering.result()


def lean_asgi_application(handler_class: type[ASGIHandler] = ASGIHandler) -> ASGIHandler:
    """The same URLs and views as the main application, behind LEAN_MIDDLEWARE only (loaded once, here)."""
    with override_settings(MIDDLEWARE=LEAN_MIDDLEWARE):
        return handler_class()
