"""The contract's response envelope, its error codes, and helpers the API views share.

Success: ``{success: true, message, data, code, timestamp}``.
Error:   ``{success: false, message, error, timestamp}`` with the matching HTTP status.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from django.http import HttpResponse, JsonResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from core.db import in_thread_pool, is_unavailable

logger = logging.getLogger(__name__)


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 in UTC with a ``Z``, as the contract writes timestamps."""
    moment = (moment or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0, tzinfo=None)
    return moment.isoformat() + "Z"  # (strftime's %Y writes year 1 as "1")


class ApiError(Exception):
    """An error the API reports to its caller with a contract error code."""

    def __init__(self, code: str, message: str, http_status: int = 400, details: Any = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.details = details


def success(data: Any = None, message: str = "OK", http_status: int = 200) -> Response:
    return Response(
        {"success": True, "message": message, "data": data, "code": http_status, "timestamp": utc_timestamp()},
        status=http_status,
    )


def error_body(code: str, message: str, details: Any = None) -> dict:
    body = {"success": False, "message": message, "error": code, "timestamp": utc_timestamp()}
    if details is not None:
        body["details"] = details
    return body


def error_json(code: str, message: str, http_status: int, details: Any = None) -> JsonResponse:
    """The error envelope for plain Django views and middleware (outside DRF)."""
    return JsonResponse(error_body(code, message, details), status=http_status)


def is_api_path(path: str) -> bool:
    """Paths programs call (answered in JSON), as against the console's pages."""
    return path.startswith(("/api/", "/v1/"))


def error_for_path(path: str, code: str, message: str, http_status: int, details: Any = None) -> JsonResponse:
    """The error envelope, or OpenAI's own error shape on `/v1/` (OpenAI clients read that one)."""
    if path.startswith("/v1/"):
        kind = "server_error" if http_status >= 500 else "invalid_request_error"
        return JsonResponse({"error": {"message": message, "type": kind, "code": code}}, status=http_status)
    return error_json(code, message, http_status, details)


DATABASE_RETRY_SECONDS = 5
DATABASE_UNAVAILABLE_MESSAGE = "The database is unavailable for the moment; try again shortly"


def database_unavailable(path: str, exc: Exception) -> JsonResponse:
    """503 DATABASE_UNAVAILABLE (with Retry-After) for a request the database failed."""
    logger.warning("the database failed %s: %s", path, str(exc).strip().splitlines()[0] if str(exc) else exc)
    response = error_for_path(path, "DATABASE_UNAVAILABLE", DATABASE_UNAVAILABLE_MESSAGE, 503)
    response["Retry-After"] = str(DATABASE_RETRY_SECONDS)
    return response


def first_error(detail: Any, prefix: str = "") -> str:
    """The first message of a DRF error tree, named by its field: ``page: ...``."""
    if isinstance(detail, dict):
        for field, value in detail.items():
            name = f"{prefix}.{field}" if prefix else str(field)
            if field == "non_field_errors":
                name = prefix
            return first_error(value, name)
    if isinstance(detail, list) and detail:
        return first_error(detail[0], prefix)
    return f"{prefix}: {detail}" if prefix else str(detail)


_DRF_ERRORS: dict[type, str] = {
    exceptions.ParseError: "INVALID_JSON",
    exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    exceptions.NotFound: "NOT_FOUND",
    exceptions.NotAuthenticated: "UNAUTHORIZED",
    exceptions.AuthenticationFailed: "UNAUTHORIZED",
    exceptions.PermissionDenied: "FORBIDDEN",
    exceptions.Throttled: "RATE_LIMITED",
    exceptions.NotAcceptable: "NOT_ACCEPTABLE",
}


def exception_handler(exc: Exception, context: dict) -> HttpResponse:
    """DRF's exception handler: every failure becomes the contract's error envelope."""
    if isinstance(exc, ApiError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.http_status)
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            error_body("VALIDATION_ERROR", first_error(exc.detail), exc.detail), status=status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, exceptions.APIException):
        code = _DRF_ERRORS.get(type(exc), str(exc.default_code).upper())
        return Response(error_body(code, first_error(exc.detail)), status=exc.status_code)
    if is_unavailable(exc):
        return database_unavailable(context["request"].path, exc)
    view = context.get("view")
    logger.exception("Unhandled error in %s", type(view).__name__ if view else "API view")
    return Response(error_body("INTERNAL_ERROR", "Internal server error"), status=500)


# --- Query parameters and pagination --------------------------------------------------------------


def validate_query(serializer_class: type[serializers.Serializer], request) -> dict:
    """Validate query parameters with a serializer; a failure is a VALIDATION_ERROR naming the field. Unknown
    parameters, and a value given empty (`?status=`) where the schema allows none, are refused rather than
    read as absent."""
    serializer = serializer_class(data=request.query_params)
    _refuse_unknown(request.query_params, serializer.fields)
    for name, field in serializer.fields.items():
        if request.query_params.get(name) == "" and not getattr(field, "allow_blank", False):
            raise exceptions.ValidationError({name: ["may not be empty: leave it out for its default"]})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _refuse_unknown(given, fields) -> None:
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise exceptions.ValidationError(
            {unknown[0]: [f"unknown parameter (known: {', '.join(fields) or 'none'})"]})


def validate_body(serializer_class: type[serializers.Serializer], request) -> dict:
    """Validate a JSON object body (an array or a scalar is refused, not read as empty; so are unknown fields, a
    misspelt one among them)."""
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError({"body": ["must be a JSON object"]})
    serializer = serializer_class(data=request.data)
    _refuse_unknown(request.data, serializer.fields)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class TextField(serializers.CharField):
    """A string and only a string (DRF's CharField also takes numbers and turns them into text)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class JsonIntegerField(serializers.IntegerField):
    """An integer in a JSON body: no strings, booleans or fractions read as one."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)) or data != int(data):
            self.fail("invalid")
        return super().to_internal_value(int(data))


class JsonFloatField(serializers.FloatField):
    """A number in a JSON body: no strings or booleans read as one."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class JsonBooleanField(serializers.BooleanField):
    """true or false in a JSON body, not "yes" or 1."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class TimeRangeQuery(serializers.Serializer):
    """`from` (inclusive) and `to` (exclusive), ISO 8601."""

    from_ = serializers.DateTimeField(required=False, help_text="ISO 8601, inclusive")
    to = serializers.DateTimeField(required=False, help_text="ISO 8601, exclusive")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")  # `from` is the parameter's name, and a Python keyword
        return fields


# What pagination can reach: page × page_size stays far inside what a database integer holds.
MAX_PAGE = 1_000_000


class PageQuery(serializers.Serializer):
    page = serializers.IntegerField(required=False, default=1, min_value=1, max_value=MAX_PAGE)
    page_size = serializers.IntegerField(required=False, default=20, min_value=1, max_value=100)


@dataclass(frozen=True)
class Page:
    items: list
    number: int
    size: int
    total: int

    def as_data(self, serialize) -> dict:
        total_pages = math.ceil(self.total / self.size) if self.total else 0
        return {
            "items": [serialize(item) for item in self.items],
            "pagination": {
                "page": self.number,
                "page_size": self.size,
                "total": self.total,
                "total_pages": total_pages,
                "has_next": self.number < total_pages,
                "has_prev": self.number > 1,
            },
        }


def paginate(queryset, page: int, page_size: int) -> Page:
    """One page of a queryset; a page past the end is empty, not an error."""
    total = queryset.count()
    start = (page - 1) * page_size
    return Page(list(queryset[start : start + page_size]), page, page_size, total)


def off_event_loop(view):
    """Run a sync view in the thread pool instead of Django's one shared sync thread.

    Under daphne every sync view runs in one thread; a view that waits on the
    network (a live source, an engine) would hold up all the others.
    """
    return in_thread_pool(view)
