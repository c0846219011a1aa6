"""Logs a log shipper can read: a request id on every request, context on every record, JSON lines on demand.

`RequestIdMiddleware` takes the request id from `X-Request-ID` (or makes one), returns it in
that header, and writes one access record per request (route, method, status, duration).
`log_context(...)` puts a task or deployment id on every record logged inside it. With
LLM_MANAGER_LOG_FORMAT=json, `JsonFormatter` writes each record as one JSON object per line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

from django.http import HttpRequest, HttpResponse

from core.metrics import HTTP_DURATION, HTTP_REQUESTS
from core.middleware import HybridMiddleware

_context: contextvars.ContextVar[dict] = contextvars.ContextVar("llm_manager_log_context", default={})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
CONTEXT_FIELDS = ("request_id", "route", "method", "status", "duration_ms", "task_id", "deployment_id")
access_log = logging.getLogger("llm_manager.requests")


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Every record logged inside carries these fields (task_id=…, deployment_id=…)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the current context's fields onto each record (an empty string where there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, context.get(name, ""))
        return True


class PlainFormatter(logging.Formatter):
    """`time level logger message`, then the context's ids in brackets when a record has any (a request's
    traceback names its request)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{name}={getattr(record, name)}" for name in ("request_id", "task_id", "deployment_id")
                       if getattr(record, name, ""))
        if not ids:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} [{ids}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context's fields that are set, and the
    traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        entry.update({name: getattr(record, name) for name in CONTEXT_FIELDS
                      if getattr(record, name, "") not in ("", None)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def request_id_from(header: str) -> str:
    """The caller's X-Request-ID when it is a sane token, else a new one."""
    return header if _REQUEST_ID.fullmatch(header) else uuid.uuid4().hex


class RequestIdMiddleware(HybridMiddleware):
    """First in both middleware stacks."""

    def call(self, request: HttpRequest):
        started, token = self._begin(request)
        try:
            response = self.get_response(request)
        finally:
            _context.reset(token)
        return self._end(request, response, started)

    async def acall(self, request: HttpRequest) -> HttpResponse:
        started, token = self._begin(request)
        try:
            response = await self.get_response(request)
        finally:
            _context.reset(token)
        return self._end(request, response, started)

    @staticmethod
    def _begin(request: HttpRequest) -> tuple[float, contextvars.Token]:
        request.request_id = request_id_from(request.headers.get("X-Request-ID", ""))
        return time.perf_counter(), _context.set({**_context.get(), "request_id": request.request_id})

    @staticmethod
    def _end(request: HttpRequest, response: HttpResponse, started: float) -> HttpResponse:
        response["X-Request-ID"] = request.request_id
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else ""
        elapsed = time.perf_counter() - started
        duration = round(elapsed * 1000, 2)
        label = route or "unmatched"
        HTTP_REQUESTS.labels(label, request.method, str(response.status_code)).inc()
        HTTP_DURATION.labels(label, request.method).observe(elapsed)
        access_log.info("%s %s %s %.2fms", request.method, request.path, response.status_code, duration,
                        extra={"request_id": request.request_id, "route": route, "method": request.method,
                               "status": response.status_code, "duration_ms": duration})
        return response
