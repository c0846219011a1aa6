"""Chat and completions through deployments (contract section 5) and the OpenAI-compatible routes.

Async views: under daphne a request waiting on an engine holds up nothing else.
`/api/…` answers in the contract's envelope; `/v1/…` in OpenAI's own shapes.
"""

from __future__ import annotations

import json
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from catalog import selectors as catalog
from core.api import ApiError, TimeRangeQuery, error_json, first_error, success, utc_timestamp, validate_query
from core.db import in_thread_pool
from core.identity import caller
from deployments import selectors
from deployments.models import DeploymentTask
from inference import services
from inference.selectors import GRANULARITIES, GROUPS, usage_series

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _json_body(request: HttpRequest):
    try:
        return json.loads(request.body or b"null")
    except ValueError as exc:
        raise ApiError("INVALID_JSON", f"Malformed JSON body: {exc}", 400) from None


def _envelope(data) -> JsonResponse:
    return JsonResponse({"success": True, "message": "OK", "data": data, "code": 200, "timestamp": utc_timestamp()})


ROUTES = {  # kind → the request schema, the engine's path, and the task a deployment loaded for it serves
    "chat": (services.ChatRequest, "/v1/chat/completions", DeploymentTask.GENERATE),
    "completion": (services.CompletionRequest, "/v1/completions", DeploymentTask.GENERATE),
    "embedding": (services.EmbeddingRequest, "/v1/embeddings", DeploymentTask.EMBED),
}


async def _answer(deployment, kind: str, path: str, payload: dict, wrap, asked: str = "") -> HttpResponse:
    """The engine's answer: streamed as it comes, or whole inside `wrap` (the envelope, or bare for /v1)."""
    services.check_model_allowed(deployment, asked)
    if kind == "chat":
        services.check_chat_supported(deployment)
    if kind == "embedding":
        services.check_embeddings_supported(deployment)
    services.touch(deployment)
    if payload.get("stream") and kind != "embedding":
        return _sse(services.stream(deployment, path, payload))
    return wrap(await services.forward(deployment, path, payload))


def _sse(chunks) -> StreamingHttpResponse:
    return StreamingHttpResponse(chunks, content_type="text/event-stream", headers=SSE_HEADERS)


async def proxy(request: HttpRequest, deployment_id: str, kind: str) -> HttpResponse:
    if request.method != "POST":
        refusal = error_json("METHOD_NOT_ALLOWED", f"Method \"{request.method}\" not allowed.", 405)
        refusal["Allow"] = "POST"
        return refusal
    try:
        schema, path, _ = ROUTES[kind]
        payload = services.validated(schema, _json_body(request))
        deployment = await services.running_deployment(deployment_id)
        return await _answer(deployment, kind, path, payload, _envelope)
    except ApiError as exc:
        return error_json(exc.code, exc.message, exc.http_status, exc.details)
    except serializers.ValidationError as exc:
        return error_json("VALIDATION_ERROR", first_error(exc.detail), 400, exc.detail)


@csrf_exempt
async def chat(request: HttpRequest, deployment_id: str) -> HttpResponse:
    return await proxy(request, deployment_id, "chat")


@csrf_exempt
async def completions(request: HttpRequest, deployment_id: str) -> HttpResponse:
    return await proxy(request, deployment_id, "completion")


@csrf_exempt
async def embeddings(request: HttpRequest, deployment_id: str) -> HttpResponse:
    return await proxy(request, deployment_id, "embedding")


# --- OpenAI-compatible routes ----------------------------------------------------------------------


def openai_error(message: str, status: int, code: str, kind: str = "invalid_request_error") -> JsonResponse:
    return JsonResponse({"error": {"message": message, "type": kind, "code": code}}, status=status)


def method_not_allowed(allowed: str) -> JsonResponse:
    refusal = openai_error("Method not allowed", 405, "METHOD_NOT_ALLOWED")
    refusal["Allow"] = allowed
    return refusal


def _running_by_age() -> list:
    return list(selectors.running(order_by="created_at"))


async def openai_models(request: HttpRequest) -> JsonResponse:
    if request.method != "GET":
        return method_not_allowed("GET")
    data = [
        {"id": deployment.name or deployment.id, "object": "model", "owned_by": "llm-manager",
         "created": int(deployment.created_at.timestamp()), "root": deployment.model_id,
         "deployment_id": deployment.id, "engine": deployment.engine, "loaded": True}
        for deployment in await in_thread_pool(_running_by_age)()
    ]
    if settings.LOAD_ON_DEMAND:  # what a call would load
        served = {entry["root"] for entry in data}
        data += [{"id": stored.model_id, "object": "model", "owned_by": "llm-manager",
                  "created": int(stored.completed_at.timestamp()), "root": stored.model_id, "source": stored.source,
                  "deployment_id": None, "engine": None, "loaded": False}
                 for stored in await in_thread_pool(catalog.downloaded_models)() if stored.model_id not in served]
    who = caller()  # a key limited to some models sees those
    data = [entry for entry in data if who.may_use_model(entry["id"], entry["root"], entry["deployment_id"] or "")]
    return JsonResponse({"object": "list", "data": data})


async def _openai_proxy(request: HttpRequest, kind: str) -> HttpResponse:
    if request.method != "POST":
        return method_not_allowed("POST")
    try:
        body = _json_body(request)
        model = body.get("model") if isinstance(body, dict) else None
        if not model or not isinstance(model, str):
            return openai_error("`model` is required: a deployment name, id or model id (a string)", 400,
                                "VALIDATION_ERROR")
        schema, path, task = ROUTES[kind]
        payload = services.validated(schema, body)
        deployment = await services.deployment_for_model(model, task)
        if deployment is None and not caller().may_use_model(model):
            return openai_error(f"The API key {caller().name!r} may not use the model `{model}`", 403, "FORBIDDEN")
        if deployment is None:
            return openai_error(f"The model `{model}` does not exist or is not running", 404, "model_not_found")
        return await _answer(deployment, kind, path, payload, JsonResponse, asked=model)
    except ApiError as exc:
        kind_of = "server_error" if exc.http_status >= 500 else "invalid_request_error"
        return openai_error(exc.message, exc.http_status, exc.code, kind_of)
    except serializers.ValidationError as exc:
        return openai_error(first_error(exc.detail), 400, "VALIDATION_ERROR")


@csrf_exempt
async def openai_chat(request: HttpRequest) -> HttpResponse:
    return await _openai_proxy(request, "chat")


@csrf_exempt
async def openai_completions(request: HttpRequest) -> HttpResponse:
    return await _openai_proxy(request, "completion")


@csrf_exempt
async def openai_embeddings(request: HttpRequest) -> HttpResponse:
    return await _openai_proxy(request, "embedding")




# --- Usage over time ---------------------------------------------------------------------------------------------


class UsageQuery(TimeRangeQuery):
    group_by = serializers.ChoiceField(choices=sorted(GROUPS), required=False, default="deployment")
    granularity = serializers.ChoiceField(choices=sorted(GRANULARITIES), required=False, default="hour")

    def validate(self, attrs: dict) -> dict:
        end = attrs.get("to") or timezone.now()
        try:
            start = attrs.get("from") or end - timedelta(hours=24)
        except OverflowError:  # `to` in the first day of year 1
            raise serializers.ValidationError({"to": ["too early"]}) from None
        if not start < end:
            raise serializers.ValidationError({"from": ["must be before `to`"]})
        return {**attrs, "from": start, "to": end}


class UsageView(APIView):
    @extend_schema(summary="Requests, errors and tokens over time, per deployment, model or key, by hour or day",
                   description="`from` defaults to 24 hours before `to`, `to` to now.", parameters=[UsageQuery])
    def get(self, request):
        query = validate_query(UsageQuery, request)
        return success(usage_series(start=query["from"], end=query["to"], group_by=query["group_by"],
                                    granularity=query["granularity"]))
