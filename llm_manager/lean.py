"""A Django ASGI handler with a short middleware stack, for the proxy routes of the inference app."""

from __future__ import annotations

from django.core.handlers.asgi import ASGIHandler
from django.test.utils import override_settings

LEAN_PREFIXES = ("/v1/", "/api/chat/", "/api/completions/")
LEAN_MIDDLEWARE = ["llm_manager.auth.ApiKeyMiddleware"]


def lean_asgi_application() -> ASGIHandler:
    """The same URLs and views as the main application, behind LEAN_MIDDLEWARE only (loaded once, here)."""
    with override_settings(MIDDLEWARE=LEAN_MIDDLEWARE):
        return ASGIHandler()
