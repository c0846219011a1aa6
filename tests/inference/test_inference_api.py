"""Chat, completions and the OpenAI-compatible API on tiny GGUF deployments served by the real llama.cpp engine."""

import json
import os
import signal
import threading
import time

import httpx
import pytest

from tests.engines import TINY_REPO, deploy, download, wait_deployment
from tests.envelope import assert_error, assert_success
from tests.service import Service, wait_for

pytest.importorskip("llama_cpp", reason="llama-cpp-python[server] is not installed")

NO_TEMPLATE_REPO = "test-org/tiny-llama-no-template-GGUF"


@pytest.fixture(scope="module")
def inf_service(tmp_path_factory, engine_env, tiny_gguf, fake_hub):
    from tests.fakes.tiny_gguf import write_tiny_gguf

    plain = write_tiny_gguf(tmp_path_factory.mktemp("plain") / "plain.F32.gguf", chat_template=None, seed=1)
    fake_hub.add_repo(NO_TEMPLATE_REPO, files={"plain.F32.gguf": plain.read_bytes()}, library_name="gguf")
    instance = Service(tmp_path_factory.mktemp("inference"), env=engine_env).start()
    with instance.client(timeout=60) as client:
        download(client, TINY_REPO)
        download(client, NO_TEMPLATE_REPO)
        ids = {}
        for name, repo, extra in (("tiny-a", TINY_REPO, {}), ("tiny-b", TINY_REPO, {}),
                                  ("plain", NO_TEMPLATE_REPO, {}),
                                  ("tools", TINY_REPO, {"engine_args": ["--chat_format", "chatml-function-calling"]})):
            ids[name] = assert_success(deploy(client, model_id=repo, name=name, **extra))["deployment_id"]
        for deployment_id in ids.values():
            assert wait_deployment(client, deployment_id, {"running", "error"})["status"] == "running"
    instance.ids = ids
    yield instance
    with instance.client() as client:
        for deployment_id in ids.values():
            client.delete(f"/api/deployments/{deployment_id}")
    instance.stop()


@pytest.fixture
def api(inf_service):
    with inf_service.client(timeout=60) as client:
        yield client


HELLO = {"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 8, "temperature": 0.7, "top_p": 0.9}


def sse_events(response) -> list:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            events.append(line[6:])
    return events


def test_chat_and_completions_in_the_envelope(api, inf_service):
    tiny = inf_service.ids["tiny-a"]
    chat = assert_success(api.post(f"/api/chat/{tiny}", json={**HELLO, "stream": False}))
    assert chat["object"] == "chat.completion" and chat["model"] == TINY_REPO and chat["id"]
    assert chat["choices"][0]["message"]["role"] == "assistant"
    assert chat["usage"]["completion_tokens"] >= 1 and chat["usage"]["prompt_tokens"] >= 1
    completion = assert_success(api.post(f"/api/completions/{tiny}", json={"prompt": "Once upon a time",
                                                                           "max_tokens": 5, "seed": 1}))
    assert completion["object"] == "text_completion" and completion["model"] == TINY_REPO
    assert isinstance(completion["choices"][0]["text"], str)
    # Usage is written within a second of the requests.
    detail = wait_for(lambda: (d := assert_success(api.get(f"/api/deployments/{tiny}")))["usage"]
                      and d["usage"]["requests"] >= 2 and d, 5, what="usage written")
    assert detail["usage"]["completion_tokens"] >= 2
    stats = assert_success(api.get("/api/models/stats"))["inference"]
    assert stats["requests"] >= 2


def test_streaming_passes_chunks_and_ends_with_done(api, inf_service):
    tiny = inf_service.ids["tiny-a"]
    with api.stream("POST", f"/api/chat/{tiny}", json={**HELLO, "stream": True, "max_tokens": 6}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks and all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    with api.stream("POST", f"/api/completions/{tiny}", json={"prompt": "Hi", "stream": True,
                                                               "max_tokens": 4}) as response:
        events = sse_events(response)
    assert events[-1] == "[DONE]" and len(events) >= 2


def _usage_of(api, deployment_id: str, requests: int) -> dict:
    return wait_for(lambda: (u := assert_success(api.get(f"/api/deployments/{deployment_id}"))["usage"])
                    and u["requests"] == requests and u, 10, what=f"{requests} requests counted")


def test_streams_are_counted_although_llama_cpp_streams_no_usage(api, inf_service):
    tiny = inf_service.ids["tiny-b"]
    before = assert_success(api.get(f"/api/deployments/{tiny}"))
    assert "streamed text chunks" in before["usage_counting"]
    body = {**HELLO, "max_tokens": 6, "temperature": 0}
    # The prompt's tokens, chat template included, as the engine counts them unstreamed.
    prompt = assert_success(api.post(f"/api/chat/{tiny}", json=body))["usage"]["prompt_tokens"]
    counted = _usage_of(api, tiny, (before["usage"] or {"requests": 0})["requests"] + 1)
    with api.stream("POST", f"/api/chat/{tiny}", json={**body, "stream": True}) as response:
        chunks = [json.loads(event) for event in sse_events(response)[:-1]]
    texts = sum(1 for chunk in chunks for choice in chunk["choices"] if choice["delta"].get("content"))
    # (A random model's text may be empty: the count must match it all the same.)
    assert chunks and not any(chunk.get("usage") for chunk in chunks)  # as the engine sent them
    usage = _usage_of(api, tiny, counted["requests"] + 1)
    assert usage["completion_tokens"] - counted["completion_tokens"] == texts
    assert usage["prompt_tokens"] - counted["prompt_tokens"] == prompt > 5  # "Hello!" and the template's tokens


def test_usage_is_read_from_a_stream_split_anywhere(inf_service):
    from inference.services import StreamUsage

    # llama.cpp's own bytes (CRLF-separated events), straight from the engine.
    port = assert_success(httpx.get(f"{inf_service.url}/api/deployments/{inf_service.ids['tiny-a']}"))["port"]
    with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/completions", timeout=60, json={
            "prompt": "Once upon", "max_tokens": 8, "temperature": 0, "stream": True}) as response:
        engine_bytes = response.read()
    whole = StreamUsage(count_chunks=True, drop_usage_chunk=False)
    assert whole.feed(engine_bytes) + whole.rest() == engine_bytes and whole.text_chunks >= 1
    byte_by_byte = StreamUsage(count_chunks=True, drop_usage_chunk=False)
    handed_on = b"".join(byte_by_byte.feed(engine_bytes[i:i + 1]) for i in range(len(engine_bytes)))
    assert handed_on + byte_by_byte.rest() == engine_bytes and byte_by_byte.text_chunks == whole.text_chunks
    # vLLM's stream asked for usage on the caller's behalf: the usage-only chunk is read and not handed on.
    vllm = (b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
            b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
            b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":1,"total_tokens":8}}\n\n'
            b"data: [DONE]\n\n")
    for size in (1, 7, len(vllm)):
        reader = StreamUsage(count_chunks=False, drop_usage_chunk=True)
        out = b"".join(reader.feed(vllm[i:i + size]) for i in range(0, len(vllm), size)) + reader.rest()
        assert reader.usage == {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}
        assert b'"usage"' not in out and out.endswith(b"data: [DONE]\n\n") and out.count(b"data: ") == 3


def test_usage_over_time_adds_up_to_the_engines_counts(api, inf_service):
    def totals(group_by: str) -> dict:
        usage = assert_success(api.get("/api/usage", params={"group_by": group_by, "granularity": "hour"}))
        return {series["key"]: {figure: sum(point[figure] for point in series["points"])
                                for figure in ("requests", "prompt_tokens", "completion_tokens")}
                for series in usage["series"]}

    tiny = inf_service.ids["tiny-a"]
    before = totals("deployment").get("tiny-a", {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0})
    answers = [assert_success(api.post(f"/api/chat/{tiny}", json={**HELLO, "max_tokens": 3})) for _ in range(3)]
    expected = {"requests": before["requests"] + 3,
                "prompt_tokens": before["prompt_tokens"] + sum(a["usage"]["prompt_tokens"] for a in answers),
                "completion_tokens": before["completion_tokens"] + sum(a["usage"]["completion_tokens"]
                                                                       for a in answers)}
    assert wait_for(lambda: totals("deployment").get("tiny-a") == expected, 10, what="usage buckets")
    by_model = totals("model")[TINY_REPO]
    assert by_model["requests"] >= expected["requests"]  # tiny-b serves the same model
    day = assert_success(api.get("/api/usage", params={"granularity": "day", "group_by": "model"}))
    assert day["totals"]["requests"] >= expected["requests"] and day["series"][0]["points"][0]["at"].endswith(
        "T00:00:00Z")
    assert_error(api.get("/api/usage", params={"from": "2026-12-05T00:00:00Z", "to": "2026-12-04T00:00:00Z"}),
                 400, "VALIDATION_ERROR")
    assert_error(api.get("/api/usage", params={"group_by": "colour"}), 400, "VALIDATION_ERROR")


def test_the_official_openai_sdk_works_unchanged(inf_service):
    from openai import OpenAI

    client = OpenAI(base_url=f"{inf_service.url}/v1", api_key="unused", max_retries=0)
    names = {model.id for model in client.models.list()}
    assert {"tiny-a", "tiny-b", "plain"} <= names
    answer = client.chat.completions.create(model="tiny-a", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert answer.choices[0].message.role == "assistant" and answer.model == TINY_REPO
    pieces = list(client.chat.completions.create(model="tiny-b", messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=4, stream=True))
    assert pieces and pieces[0].object == "chat.completion.chunk"
    completion = client.completions.create(model=inf_service.ids["tiny-a"], prompt="Once", max_tokens=3)
    assert completion.object == "text_completion"
    from openai import NotFoundError

    with pytest.raises(NotFoundError) as missing:
        client.chat.completions.create(model="nobody", messages=[{"role": "user", "content": "Hi"}])
    assert missing.value.body["code"] == "model_not_found"


def test_two_deployments_answer_concurrently(inf_service):
    results = []

    def ask(name):
        with inf_service.client(timeout=60) as client:
            for _ in range(3):
                response = client.post(f"/api/chat/{inf_service.ids[name]}", json=HELLO)
                results.append((name, response.status_code))

    threads = [threading.Thread(target=ask, args=(name,)) for name in ("tiny-a", "tiny-b", "tiny-a", "tiny-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 12 and all(status == 200 for _, status in results)


def test_requests_after_the_engine_closed_idle_connections(api, inf_service):
    # llama.cpp's server (uvicorn) closes a kept-alive connection after 5 idle seconds; the proxy must not
    # answer the next caller with a 502 on a connection the engine has closed.
    tiny = inf_service.ids["tiny-a"]
    for _ in range(2):
        assert assert_success(api.post(f"/api/chat/{tiny}", json=HELLO))["object"] == "chat.completion"
        time.sleep(5.5)
    with api.stream("POST", f"/api/chat/{tiny}", json={**HELLO, "stream": True}) as response:
        assert sse_events(response)[-1] == "[DONE]"


def test_a_client_leaving_mid_stream_leaves_the_engine_serving(api, inf_service):
    tiny = inf_service.ids["tiny-b"]
    with api.stream("POST", f"/api/chat/{tiny}", json={**HELLO, "stream": True, "max_tokens": 512}) as response:
        first = next(response.iter_lines())
        assert first.startswith("data: ")
    # Gone after the first chunk; the engine must be free for the next caller.
    assert assert_success(api.post(f"/api/chat/{tiny}", json=HELLO))["object"] == "chat.completion"


def test_every_other_openai_field_goes_to_the_engine(inf_service):
    from openai import APIStatusError, OpenAI

    client = OpenAI(base_url=f"{inf_service.url}/v1", api_key="unused", max_retries=0)
    hello = [{"role": "user", "content": "The weather in Paris?"}]
    # JSON mode with a schema: llama.cpp constrains the answer with a grammar, so even random weights answer JSON.
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 6}, "days": {"type": "integer",
              "minimum": 0, "maximum": 9}}, "required": ["city", "days"], "additionalProperties": False}
    answer = client.chat.completions.create(model="tiny-a", messages=hello, max_tokens=48, temperature=0,
                                            response_format={"type": "json_object", "schema": schema})
    forecast = json.loads(answer.choices[0].message.content)
    assert set(forecast) == {"city", "days"} and isinstance(forecast["days"], int)
    # Log probabilities come back.
    answer = client.chat.completions.create(model="tiny-a", messages=hello, max_tokens=3, logprobs=True,
                                            top_logprobs=2)
    tokens = answer.choices[0].logprobs.content
    assert tokens and all(token.top_logprobs and token.logprob <= 0 for token in tokens)
    # Tools reach the engine: with llama-cpp-python's function-calling chat format the answer carries the call.
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 6}}, "required": ["city"]}}}
    answer = client.chat.completions.create(model="tools", messages=hello, max_tokens=48, tools=[weather],
                                            tool_choice={"type": "function", "function": {"name": "get_weather"}})
    (call,) = answer.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    # A field the engine refuses comes back as its own error (OpenAI's shape on /v1, the envelope on /api).
    with pytest.raises(APIStatusError) as refused:
        client.chat.completions.create(model="tiny-a", messages=hello, max_tokens=2, top_logprobs="many")
    assert refused.value.status_code == 502 and refused.value.body["code"] == "ENGINE_ERROR"
    assert "top_logprobs" in refused.value.body["message"]


def test_bad_chat_requests(api, inf_service):
    tiny = inf_service.ids["tiny-a"]
    assert_error(api.post("/api/chat/deploy_nope", json=HELLO), 404, "DEPLOYMENT_NOT_FOUND")
    assert_error(api.post(f"/api/chat/{inf_service.ids['plain']}", json=HELLO), 400, "CHAT_NOT_SUPPORTED")
    assert_success(api.post(f"/api/completions/{inf_service.ids['plain']}", json={"prompt": "Hi", "max_tokens": 2}))
    for bad in ({"messages": []}, {"messages": [{"role": "wizard", "content": "x"}]}, {**HELLO, "temperature": 3},
                {**HELLO, "temperature": -1}, {**HELLO, "top_p": 0}, {**HELLO, "top_p": 1.5},
                {**HELLO, "max_tokens": 0}, {"prompt": "x"}):
        assert_error(api.post(f"/api/chat/{tiny}", json=bad), 400, "VALIDATION_ERROR")
    assert_error(api.post(f"/api/completions/{tiny}", json={"prompt": []}), 400, "VALIDATION_ERROR")
    assert_error(api.post(f"/api/chat/{tiny}", content=b"{nope", headers={"Content-Type": "application/json"}),
                 400, "INVALID_JSON")
    assert_error(api.get(f"/api/chat/{tiny}"), 405, "METHOD_NOT_ALLOWED")
    openai_error = api.post("/v1/chat/completions", json={"model": "tiny-a", "messages": []})
    assert openai_error.status_code == 400 and openai_error.json()["error"]["code"] == "VALIDATION_ERROR"


def test_an_engine_failure_is_a_502_with_its_message(api, inf_service):
    # A prompt longer than the deployment's context (max_model_len 256): the engine refuses it.
    response = api.post(f"/api/completions/{inf_service.ids['tiny-a']}", json={"prompt": "hello " * 600,
                                                                              "max_tokens": 4})
    body = assert_error(response, 502, "ENGINE_ERROR")
    assert "context" in body["message"].lower()


def test_engine_killed_mid_stream_and_stopped_deployments(api, inf_service):
    with inf_service.client(timeout=60) as client:
        deployment_id = assert_success(deploy(client, name="doomed"))["deployment_id"]
        running = wait_deployment(client, deployment_id, {"running", "error"})
        assert running["status"] == "running"
        with client.stream("POST", f"/api/chat/{deployment_id}",
                           json={**HELLO, "stream": True, "max_tokens": 4096}) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            os.killpg(running["pid"], signal.SIGKILL)
            rest = [line[6:] for line in lines if line.startswith("data: ")]
        assert rest[-1] == "[DONE]"
        assert any('"error"' in event and "ENGINE_ERROR" in event for event in rest[:-1])
        assert_success(client.put(f"/api/deployments/{deployment_id}/stop"))
        assert_error(client.post(f"/api/chat/{deployment_id}", json=HELLO), 409, "DEPLOYMENT_NOT_RUNNING")
        assert_success(client.delete(f"/api/deployments/{deployment_id}"))
