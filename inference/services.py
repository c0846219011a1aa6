"""The proxy between callers and engines: validation, routing, pooled connections, usage counting.

Every engine speaks the OpenAI API, so a request is checked, pointed at the right engine
and passed on; a streamed answer goes back chunk by chunk as the engine sends it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any, AsyncIterator

from django.conf import settings
from django.core.validators import ProhibitNullCharactersValidator
from django.db.models import F
from django.utils import timezone
from prometheus_client import Counter, Histogram
from rest_framework import serializers

from core import ratelimit
from core.api import ApiError, JsonBooleanField, JsonFloatField, JsonIntegerField, TextField
from core.db import in_thread_pool
from core.identity import caller
from core.metrics import LATENCY_BUCKETS
from deployments.engines import ENGINES
from deployments.models import Deployment, DeploymentStatus, DeploymentTask
from deployments.selectors import ROUTE_TTL
from inference import loading
from inference.engine_http import EnginePool, EngineRefused, EngineResponse, EngineUnavailable
from inference.models import DeploymentUsage, UsageBucket

ROLES = ("system", "user", "assistant", "tool", "developer")

# Labelled by the key's name (never the key); empty for an operator's or an open service's calls.
LABELS = ["deployment", "model", "key"]
INFERENCE_REQUESTS = Counter("llm_manager_inference_requests", "Requests to engines, by deployment, model and key",
                             LABELS)
INFERENCE_ERRORS = Counter("llm_manager_inference_errors", "Requests to engines that failed, by deployment, model "
                           "and key", LABELS)
INFERENCE_TOKENS = Counter("llm_manager_inference_tokens", "Tokens in (prompt) and out (completion), by deployment, "
                           "model and key", [*LABELS, "direction"])
FIRST_TOKEN = Histogram("llm_manager_inference_first_token_seconds", "Time from the request to the engine's first "
                        "chunk (streams) or its whole answer", LABELS, buckets=LATENCY_BUCKETS)
_pools: dict[tuple[str, int], EnginePool] = {}
JSON_HEADERS = [(b"Content-Type", b"application/json"), (b"Accept", b"application/json, text/event-stream")]


class PassedText(TextField):
    """Any string, NUL characters too: it goes on to the engine and is never stored."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)]


class Message(serializers.Serializer):
    role = serializers.ChoiceField(choices=ROLES)
    content = serializers.JSONField(allow_null=True, required=False)
    name = PassedText(required=False, allow_blank=True)


class Sampling(serializers.Serializer):
    stream = JsonBooleanField(required=False, default=False)
    temperature = JsonFloatField(required=False, min_value=0, max_value=2)
    max_tokens = JsonIntegerField(required=False, min_value=1)
    top_p = JsonFloatField(required=False, max_value=1)
    stop = serializers.JSONField(required=False, allow_null=True)
    presence_penalty = JsonFloatField(required=False, min_value=-2, max_value=2)
    frequency_penalty = JsonFloatField(required=False, min_value=-2, max_value=2)
    seed = JsonIntegerField(required=False)
    n = JsonIntegerField(required=False, min_value=1, max_value=16)
    stream_options = serializers.JSONField(required=False, allow_null=True)

    def validate_top_p(self, value: float) -> float:
        if value <= 0:
            raise serializers.ValidationError("must be in (0, 1]")
        return value


class ChatRequest(Sampling):
    messages = Message(many=True, allow_empty=False)


class CompletionRequest(Sampling):
    prompt = serializers.JSONField()

    def validate_prompt(self, value):
        if not isinstance(value, (str, list)) or (isinstance(value, list) and not value):
            raise serializers.ValidationError("must be a string or a non-empty list")
        return value


class EmbeddingRequest(serializers.Serializer):
    input = serializers.JSONField()

    def validate_input(self, value):
        """OpenAI's forms: a text, texts, one text's token ids, or several texts' token ids."""
        def token_ids(item) -> bool:
            return isinstance(item, list) and bool(item) and all(
                isinstance(token, int) and not isinstance(token, bool) for token in item)

        if isinstance(value, str) or (isinstance(value, list) and value and (
                all(isinstance(text, str) for text in value) or token_ids(value)
                or all(token_ids(item) for item in value))):
            return value
        raise serializers.ValidationError("must be a string, a non-empty list of strings, or token ids (a list of "
                                          "integers, or a list of such lists)")


# One instance per request schema, reused: building a serializer deep-copies all its fields, which
# costs more than the validation itself. Validation keeps no state on the instance.
_validators: dict[type[serializers.Serializer], serializers.Serializer] = {}


def validated(serializer_class: type[serializers.Serializer], body: Any) -> dict:
    if not isinstance(body, dict):
        raise serializers.ValidationError({"body": ["must be a JSON object"]})
    validator = _validators.get(serializer_class) or _validators.setdefault(serializer_class, serializer_class())
    validator.run_validation(body)
    # Pass on what the caller sent, as sent, no defaults added: the fields checked here and every other one
    # (tools, response_format, logprobs, top_k…), which the engine takes or refuses with its own error.
    return dict(body)


# The hot path reads no database: routes are cached for a second, usage is added up in memory and
# written once a second. A deployment that stops is noticed within ROUTE_TTL (its engine refuses first).
USAGE_FLUSH_SECONDS = 1.0
_routes: dict[tuple[str, str], tuple[float, Deployment | None]] = {}
_usage: dict[tuple[str, str], list[int]] = {}  # (deployment id, key name) → requests, errors, tokens in, out
_names: dict[str, tuple[str, str]] = {}  # deployment id → (its name, its model), for the usage buckets
_key_tokens: dict[str, int] = {}  # key id → tokens to count against its tokens per minute
_flusher: asyncio.Task | None = None


async def _cached(kind: str, key: str, lookup) -> Deployment | None:
    now = time.monotonic()
    hit = _routes.get((kind, key))
    if hit and now - hit[0] < ROUTE_TTL:
        return hit[1]
    # Off the request's own thread: pool threads keep their database connections between requests.
    deployment = await in_thread_pool(lookup)()
    _routes[(kind, key)] = (now, deployment)
    return deployment


async def running_deployment(deployment_id: str, load: bool = True) -> Deployment:
    """The deployment, running: with LLM_MANAGER_LOAD_ON_DEMAND (and `load`) a stopped or failed one is started
    again and answered once ready; else DEPLOYMENT_NOT_RUNNING."""
    deployment = await _cached("id", deployment_id, lambda: Deployment.objects.filter(id=deployment_id).first())
    if deployment is None:
        raise ApiError("DEPLOYMENT_NOT_FOUND", f"No deployment {deployment_id}", 404)
    if deployment.status == DeploymentStatus.RUNNING:
        return deployment
    if load and settings.LOAD_ON_DEMAND and deployment.status != DeploymentStatus.STOPPING:
        deployment = await loading.loaded(deployment=deployment, task=deployment.task)
        _routes[("id", deployment_id)] = (time.monotonic(), deployment)
        return deployment
    raise ApiError("DEPLOYMENT_NOT_RUNNING", f"Deployment {deployment_id} is {deployment.status}", 409)


def _find_running(model: str) -> Deployment | None:
    running = Deployment.objects.filter(status=DeploymentStatus.RUNNING).order_by("-created_at")
    for lookup in ({"name": model}, {"id": model}, {"model_id": model}):
        found = running.filter(**lookup).first()
        if found:
            return found
    return None


async def deployment_for_model(model: str, task: str) -> Deployment | None:
    """A running deployment named `model`, or with that id, or serving that model id; with
    LLM_MANAGER_LOAD_ON_DEMAND, else one started for it (a stopped deployment of it, or the downloaded model),
    unless the calling key may not use that name."""
    found = await _cached("model", model, lambda: _find_running(model))
    if found is None and settings.LOAD_ON_DEMAND and caller().may_use_model(model):
        found = await loading.loaded(model=model, task=task)
        _routes[("model", model)] = (time.monotonic(), found)
    return found


async def _post(deployment: Deployment, path: str, body: dict) -> EngineResponse:
    """POST `body` as JSON to the deployment's engine, through the engine's own pool of connections
    (reused between requests; one slow engine holds up no other)."""
    pool = _pools.get((deployment.host, deployment.port))
    if pool is None:
        pool = _pools[(deployment.host, deployment.port)] = EnginePool(deployment.host, deployment.port)
    return await pool.post(path, json.dumps(body).encode(), JSON_HEADERS)


def engine_model(deployment: Deployment) -> str:
    return deployment.engine_model or deployment.name or deployment.id


def check_model_allowed(deployment: Deployment, asked: str = "") -> None:
    """FORBIDDEN unless the calling key may use the deployment's model (by its model id, name or id, or the name
    it was asked for by)."""
    who = caller()
    if not who.may_use_model(asked, deployment.model_id, deployment.name, deployment.id):
        raise ApiError("FORBIDDEN", f"The API key {who.name!r} may not use the model {asked or deployment.model_id!r}"
                       f" (it may use: {', '.join(who.models)})", 403)


def check_chat_supported(deployment: Deployment) -> None:
    if deployment.supports_chat is False:
        raise ApiError("CHAT_NOT_SUPPORTED", f"{deployment.model_id} cannot chat: "
                       f"{deployment.chat_problem or 'it has no chat template'}; use completions", 400)


def check_embeddings_supported(deployment: Deployment) -> None:
    if deployment.task != DeploymentTask.EMBED:
        raise ApiError("EMBEDDINGS_NOT_SUPPORTED", f"Deployment {deployment.name or deployment.id} was started for "
                       f"{deployment.task}; deploy the model with task: embed for embeddings", 400)


async def forward(deployment: Deployment, path: str, payload: dict) -> dict:
    """A non-streaming request; the answer names our model id, whatever the engine called it."""
    body = {**payload, "model": engine_model(deployment)}
    started = time.perf_counter()
    try:
        response = await _post(deployment, path, body)
        try:
            content = await response.read()
        finally:
            response.close()
        FIRST_TOKEN.labels(*metric_labels(deployment)).observe(time.perf_counter() - started)
    except EngineUnavailable as exc:
        if isinstance(exc, EngineRefused):
            # Maybe stopped since the route was cached: the current status decides what to say.
            _routes.pop(("id", deployment.id), None)
            await running_deployment(deployment.id, load=False)
        await count(deployment, error=True)
        raise ApiError("ENGINE_ERROR", f"The engine did not answer: {exc}", 502) from None
    if response.status >= 400:
        await count(deployment, error=True)
        raise ApiError("ENGINE_ERROR", f"The engine answered {response.status}: {_engine_message(content)}", 502)
    try:
        data = json.loads(content)
    except ValueError:
        await count(deployment, error=True)
        raise ApiError("ENGINE_ERROR", "The engine answered something that is not JSON", 502) from None
    data["model"] = deployment.model_id
    usage = data.get("usage") or {}
    await count(deployment, prompt=usage.get("prompt_tokens", 0), completion=usage.get("completion_tokens", 0))
    return data


def _engine_message(content: bytes) -> str:
    """What an engine's error answer says: OpenAI's `error.message` where it has one, else its first bytes."""
    text = content[:300].decode(errors="replace")
    try:
        error = json.loads(content).get("error")
    except (ValueError, AttributeError):
        return text
    return error.get("message", str(error)) if isinstance(error, dict) else str(error or text)


EVENT_END = re.compile(rb"\r?\n\r?\n")  # sse-starlette (llama.cpp) ends events with CRLF CRLF, others with LF LF


class StreamUsage:
    """Follows an OpenAI event stream however its bytes are split, handing on whole events as they complete.

    Keeps the last `usage` the engine sent; for an engine that never puts usage in a stream, counts the chunks
    that carry generated text (one token each, as llama.cpp streams them); drops the usage-only chunk the service
    asked for on a caller's behalf who did not ask for it."""

    def __init__(self, *, count_chunks: bool, drop_usage_chunk: bool):
        self.count_chunks, self.drop_usage_chunk = count_chunks, drop_usage_chunk
        self.usage: dict = {}
        self.text_chunks = 0
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        """The whole events `data` completes (to hand on); an unfinished one waits for its end."""
        self._pending += data
        ends = list(EVENT_END.finditer(self._pending))
        if not ends:
            return b""
        complete, self._pending = self._pending[: ends[-1].end()], self._pending[ends[-1].end():]
        if not (self.count_chunks or b'"usage"' in complete):
            return complete  # nothing to read in these events: handed on as they came
        kept, start = [], 0
        for end in ends:
            event = complete[start:end.end()]
            start = end.end()
            if self._keep(event):
                kept.append(event)
        return b"".join(kept)

    def rest(self) -> bytes:
        """What came after the last whole event (an engine that stopped mid-event)."""
        rest, self._pending = self._pending, b""
        return rest

    def _keep(self, event: bytes) -> bool:
        data = next((line[6:] for line in event.splitlines() if line.startswith(b"data: {")), None)
        if data is None or not (self.count_chunks or b'"usage"' in data):
            return True
        try:
            chunk = json.loads(data)
        except ValueError:
            return True
        if self.count_chunks:
            self.text_chunks += sum(1 for choice in chunk.get("choices") or []
                                    if (choice.get("delta") or {}).get("content") or choice.get("text"))
        if chunk.get("usage"):
            self.usage = chunk["usage"]
            return not (self.drop_usage_chunk and not chunk.get("choices"))
        return True


async def stream(deployment: Deployment, path: str, payload: dict) -> AsyncIterator[bytes]:
    """The engine's SSE events as they arrive; an engine failure becomes an error event, then [DONE]. Usage is
    counted whatever the engine does (see StreamUsage and Engine.stream_usage)."""
    body = {**payload, "model": engine_model(deployment), "stream": True}
    engine = ENGINES.get(deployment.engine)
    stream_usage = engine.stream_usage if engine else "never"
    asked = isinstance(payload.get("stream_options"), dict) and payload["stream_options"].get("include_usage")
    if stream_usage == "on_request" and not asked:
        body["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
    reader = StreamUsage(count_chunks=stream_usage == "never", drop_usage_chunk=stream_usage == "on_request"
                         and not asked)
    failed, started, first = False, time.perf_counter(), True
    try:
        response = await _post(deployment, path, body)
        try:
            if response.status >= 400:
                failed = True
                message = _engine_message(await response.read())
                yield _error_event(f"The engine answered {response.status}: {message}")
                yield b"data: [DONE]\n\n"
                return
            async for chunk in response.chunks():
                if events := reader.feed(chunk):
                    if first:
                        first = False
                        FIRST_TOKEN.labels(*metric_labels(deployment)).observe(time.perf_counter() - started)
                    yield events
            if rest := reader.rest():
                yield rest
        finally:
            response.close()
    except EngineUnavailable as exc:
        failed = True
        yield _error_event(f"The engine stopped answering: {exc}")
        yield b"data: [DONE]\n\n"
    finally:
        usage = reader.usage
        if stream_usage == "never" and not failed:
            usage = {"completion_tokens": reader.text_chunks,
                     "prompt_tokens": await _prompt_tokens(deployment, path, payload)}
        await count(deployment, error=failed, prompt=usage.get("prompt_tokens", 0),
                    completion=usage.get("completion_tokens", 0))


# What a one-token request for the prompt's count leaves out of the caller's request.
_NOT_FOR_COUNTING = ("stream", "stream_options", "n", "best_of", "max_completion_tokens", "logprobs",
                     "top_logprobs", "echo")


async def _prompt_tokens(deployment: Deployment, path: str, payload: dict) -> int:
    """The prompt's tokens, chat template included, as the engine counts them: from its usage for the same request
    unstreamed and cut to one token; 0 when it cannot tell."""
    body = {name: value for name, value in payload.items() if name not in _NOT_FOR_COUNTING}
    body.update(model=engine_model(deployment), stream=False, max_tokens=1)
    try:
        response = await _post(deployment, path, body)
        try:
            content = await response.read()
        finally:
            response.close()
        return int(json.loads(content)["usage"]["prompt_tokens"]) if response.status == 200 else 0
    except (EngineUnavailable, ValueError, TypeError, KeyError):
        return 0


def _error_event(message: str) -> bytes:
    error = {"error": {"message": message, "type": "engine_error", "code": "ENGINE_ERROR"}}
    return f"data: {json.dumps(error)}\n\n".encode()


def touch(deployment: Deployment) -> None:
    """A request to the deployment begins: its last request time (which its idle_timeout counts from) is written
    within USAGE_FLUSH_SECONDS."""
    global _flusher
    _usage.setdefault((deployment.id, caller().key_name), [0, 0, 0, 0])
    _names[deployment.id] = (deployment.name or deployment.id, deployment.model_id)
    if _flusher is None or _flusher.done():
        _flusher = asyncio.get_running_loop().create_task(_flush_usage())


def metric_labels(deployment: Deployment) -> tuple[str, str, str]:
    return deployment.name or deployment.id, deployment.model_id, caller().key_name


async def count(deployment: Deployment, error: bool = False, prompt: int = 0, completion: int = 0) -> None:
    """Add a request to the usage of the deployment and the calling key; written to the database (and counted
    against the key's tokens per minute) within USAGE_FLUSH_SECONDS."""
    touch(deployment)
    labels = metric_labels(deployment)
    INFERENCE_REQUESTS.labels(*labels).inc()
    if error:
        INFERENCE_ERRORS.labels(*labels).inc()
    INFERENCE_TOKENS.labels(*labels, "prompt").inc(prompt or 0)
    INFERENCE_TOKENS.labels(*labels, "completion").inc(completion or 0)
    totals = _usage[(deployment.id, labels[2])]
    totals[0] += 1
    totals[1] += int(error)
    totals[2] += prompt or 0
    totals[3] += completion or 0
    who = caller()
    if who.tokens_per_minute and (prompt or completion):
        _key_tokens[who.key_id] = _key_tokens.get(who.key_id, 0) + (prompt or 0) + (completion or 0)


async def _flush_usage() -> None:
    while _usage:
        await asyncio.sleep(USAGE_FLUSH_SECONDS)
        pending, spent = dict(_usage), dict(_key_tokens)
        _usage.clear()
        _key_tokens.clear()
        await in_thread_pool(_write_usage)(pending, spent)


def _write_usage(pending: dict[tuple[str, str], list[int]], spent: dict[str, int]) -> None:
    for key_id, tokens in spent.items():
        ratelimit.counter().add(key_id, "tokens", tokens)
    now = timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    per_deployment: dict[str, list[int]] = {}
    for (deployment_id, key_name), figures in pending.items():
        if figures[0]:
            name, model = _names.get(deployment_id, (deployment_id, ""))
            UsageBucket.objects.get_or_create(hour=hour, deployment_id=deployment_id, key_name=key_name,
                                              defaults={"deployment_name": name, "model": model})
            UsageBucket.objects.filter(hour=hour, deployment_id=deployment_id, key_name=key_name).update(
                **_added(figures))
        summed = per_deployment.setdefault(deployment_id, [0, 0, 0, 0])
        summed[:] = [a + b for a, b in zip(summed, figures)]
    for deployment_id, figures in per_deployment.items():
        if not Deployment.objects.filter(id=deployment_id).update(last_request_at=now):
            continue  # deleted meanwhile
        DeploymentUsage.objects.get_or_create(deployment_id=deployment_id)
        DeploymentUsage.objects.filter(deployment_id=deployment_id).update(**_added(figures))


def _added(figures: list[int]) -> dict:
    requests, errors, prompt, completion = figures
    return {"requests": F("requests") + requests, "errors": F("errors") + errors,
            "prompt_tokens": F("prompt_tokens") + prompt, "completion_tokens": F("completion_tokens") + completion}
