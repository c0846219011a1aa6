"""OpenAPI entries for the inference routes, which are plain async Django views (streaming) outside DRF."""

from __future__ import annotations

# Exactly what inference/services.py checks; every other field (tools, tool_choice, response_format, logprobs,
# top_logprobs, max_completion_tokens, top_k, min_p, logit_bias, user…) goes to the engine unchanged.
_SAMPLING = {
    "stream": {"type": "boolean", "default": False},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "max_tokens": {"type": "integer", "minimum": 1},
    "top_p": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1},
    "stop": {"description": "a string or a list of strings, passed to the engine"},
    "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "seed": {"type": "integer"},
    "n": {"type": "integer", "minimum": 1, "maximum": 16},
    "stream_options": {"description": "passed to the engine"},
}
_MESSAGES = {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["role"], "properties": {
    "role": {"type": "string", "enum": ["system", "user", "assistant", "tool", "developer"]},
    "content": {"description": "text, or a list of content parts; passed to the engine"},
    "name": {"type": "string"}}}}
_PROMPT = {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1}]}
_TOKENS = {"type": "array", "minItems": 1, "items": {"type": "integer"}}
_INPUT = {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}}, _TOKENS,
                    {"type": "array", "minItems": 1, "items": _TOKENS}],
          "description": "a text, texts, one text's token ids, or several texts' token ids"}
_ID = [{"in": "path", "name": "deployment_id", "required": True, "schema": {"type": "string"}}]
_STREAM = {"text/event-stream": {"schema": {"type": "string", "description": "OpenAI chunks, then data: [DONE]"}}}


def _post(operation_id, summary, properties, required, parameters=(), errors="envelope", sampling=True):
    return {"post": {
        "operationId": operation_id, "summary": summary, "tags": ["inference"], "parameters": list(parameters),
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": required, "properties": {**properties, **(_SAMPLING if sampling else {})},
            "additionalProperties": True,
            "description": "The fields listed are checked; any other field goes to the engine unchanged, which "
                           "takes it or refuses it (502 ENGINE_ERROR with the engine's message)."}}}},
        "responses": {"200": {"description": "The engine's OpenAI answer"
                              + (" in the envelope's data" if errors == "envelope" else ""),
                              "content": {"application/json": {"schema": {"type": "object"}}, **_STREAM}},
                      "400": {"description": "VALIDATION_ERROR, CHAT_NOT_SUPPORTED, EMBEDDINGS_NOT_SUPPORTED, "
                                             "INVALID_JSON"},
                      "404": {"description": "DEPLOYMENT_NOT_FOUND (model_not_found on /v1)"},
                      "409": {"description": "DEPLOYMENT_NOT_RUNNING"},
                      "502": {"description": "ENGINE_ERROR"}}}}


def add_inference_paths(result, generator, request, public):
    paths = result.setdefault("paths", {})
    paths["/api/chat/{deployment_id}"] = _post("chat_create", "Chat with a running deployment",
                                               {"messages": _MESSAGES}, ["messages"], _ID)
    paths["/api/completions/{deployment_id}"] = _post("completions_create", "Text completion on a running deployment",
                                                      {"prompt": _PROMPT}, ["prompt"], _ID)
    paths["/api/embeddings/{deployment_id}"] = _post(
        "embeddings_create", "Embeddings from a deployment started with task: embed", {"input": _INPUT}, ["input"],
        _ID, sampling=False)
    model = {"model": {"type": "string", "minLength": 1, "description": "deployment name, deployment id or model id"}}
    paths["/v1/chat/completions"] = _post("openai_chat_completions", "OpenAI-compatible chat (routed by `model`)",
                                          {**model, "messages": _MESSAGES}, ["model", "messages"], errors="openai")
    paths["/v1/completions"] = _post("openai_completions", "OpenAI-compatible completions (routed by `model`)",
                                     {**model, "prompt": _PROMPT}, ["model", "prompt"], errors="openai")
    paths["/v1/embeddings"] = _post("openai_embeddings", "OpenAI-compatible embeddings (routed by `model`)",
                                    {**model, "input": _INPUT}, ["model", "input"], errors="openai", sampling=False)
    paths["/v1/models"] = {"get": {"operationId": "openai_models", "tags": ["inference"],
                                   "summary": "OpenAI-compatible list of running deployments",
                                   "responses": {"200": {"description": "{object: list, data: [...]}"}}}}
    return result
