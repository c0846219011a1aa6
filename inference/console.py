"""The console's playground (chat or complete with a running deployment, the answer streamed in) and its Usage
page.

The page posts to `send`, under the admin's session and CSRF check, which answers exactly as
/api/chat and /api/completions do: the public inference routes take an API key, and the console
never puts one in a page.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_protect

from core.admin_actions import console_page
from core.api import error_json
from deployments import selectors
from inference import views
from inference.selectors import FIGURES, usage_series

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


USAGE_SPANS = {"24h": (timedelta(hours=24), "hour"), "7d": (timedelta(days=7), "hour"),
               "30d": (timedelta(days=30), "day"), "365d": (timedelta(days=365), "day")}


def usage_page(request: HttpRequest) -> HttpResponse:
    """Requests and tokens over time (charts drawn by uPlot, served from static/) and a table per key."""
    span = request.GET.get("span") if request.GET.get("span") in USAGE_SPANS else "24h"
    length, granularity = USAGE_SPANS[span]
    end = timezone.now()
    start = end - length
    totals = usage_series(start=start, end=end, group_by="model", granularity=granularity)
    per_key = usage_series(start=start, end=end, group_by="key", granularity=granularity)
    rows = [{"key": entry["key"] or "(no key: console, open service)",
             **{figure: sum(point[figure] for point in entry["points"]) for figure in FIGURES}}
            for entry in per_key["series"]]
    return console_page(request, admin.site, "admin/inference/usage.html", "Usage", spans=list(USAGE_SPANS),
                        span=span, series=totals, rows=sorted(rows, key=lambda row: -row["requests"]),
                        totals=per_key["totals"])
