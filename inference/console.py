"""The console's playground: chat or complete with a running deployment, the answer streamed in.

The page posts to `send`, under the admin's session and CSRF check, which answers exactly as
/api/chat and /api/completions do: the public inference routes take an API key, and the console
never puts one in a page.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_protect

from core.admin_actions import console_page
from core.api import error_json
from deployments import selectors
from inference import views

KINDS = {"chat": "chat", "completions": "completion"}


def page(request: HttpRequest) -> HttpResponse:
    running = selectors.running()
    return console_page(request, admin.site, "admin/inference/playground.html", "Playground", deployments=running)


@csrf_protect
async def send(request: HttpRequest, kind: str, deployment_id: str) -> HttpResponse:
    user = await request.auser()
    if not (user.is_active and user.is_staff):
        return error_json("UNAUTHORIZED", "Sign in to the console as a staff user", 401)
    if kind not in KINDS:
        return error_json("NOT_FOUND", f"No playground mode {kind}", 404)
    return await views.proxy(request, deployment_id, KINDS[kind])
