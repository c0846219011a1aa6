"""API keys with scopes, model limits, expiry, revocation and limits per minute; usage per key; the audit trail.

A service of these tests' own, with LLM_MANAGER_API_KEY set (the all-scopes key of today's setups) and a tiny
llama.cpp deployment; keys are made as an operator makes them, with `manage.py apikey`.
"""

from __future__ import annotations

import getpass
import json
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.engines import TINY_REPO, deploy, download, wait_deployment
from tests.envelope import assert_error, assert_success
from tests.service import Service, wait_for

pytest.importorskip("llama_cpp", reason="llama-cpp-python[server] is not installed")

ENV_KEY = "env-key-of-all-scopes"
OPERATOR = ("auditor", "auditor-password-1")
HELLO = {"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 4, "seed": 1}


def new_key(service: Service, name: str, *flags: str) -> str:
    key = service.create_key(name, *flags)
    assert re.fullmatch(r"[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}", key), key
    return key


def as_key(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, engine_env, tiny_gguf):
    instance = Service(tmp_path_factory.mktemp("access"), env={**engine_env, "LLM_MANAGER_API_KEY": ENV_KEY}).start()
    with instance.client(timeout=60, headers={"X-API-Key": ENV_KEY}) as client:
        download(client, TINY_REPO)
        instance.tiny = assert_success(deploy(client, name="tiny"))["deployment_id"]
        assert wait_deployment(client, instance.tiny, {"running", "error"})["status"] == "running"
    yield instance
    with instance.client(headers={"X-API-Key": ENV_KEY}) as client:  # engines outlive the service: stop them
        for deployment in assert_success(client.get("/api/deployments/list"))["items"]:
            client.delete(f"/api/deployments/{deployment['deployment_id']}")
    instance.stop()


@pytest.fixture
def api(keyed):
    with keyed.client(timeout=60) as client:
        yield client


def test_the_service_is_open_until_a_key_exists_then_refuses_callers_without_one(start_service):
    service = start_service()
    with service.client() as client:
        assert client.get("/api/system/load").status_code == 200
        key = new_key(service, "first", "--scopes", "read")
        refused = wait_for(lambda: (r := client.get("/api/system/load")).status_code == 401 and r, 5,
                           what="keys to be required")
        assert_error(refused, 401, "UNAUTHORIZED")
        assert client.get("/api/system/load", headers=as_key(key)).status_code == 200
        assert client.get("/health").status_code == 200 and client.get("/api/health").status_code == 200
        # Its revocation leaves no usable key: open again.
        service.manage("apikey", "revoke", "first", check=True)
        wait_for(lambda: client.get("/api/system/load").status_code == 200, 5, what="the service to open again")


def test_scopes_decide_what_a_key_may_do(api, keyed):
    reader = new_key(keyed, "reader", "--scopes", "read")
    manager = new_key(keyed, "manager", "--scopes", "manage")
    watcher = new_key(keyed, "watcher", "--scopes", "metrics")
    chatter = new_key(keyed, "chatter", "--scopes", "inference")
    admin = new_key(keyed, "keeper", "--scopes", "admin")

    assert_success(api.get("/api/downloads/list", headers=as_key(reader)))
    refusal = assert_error(api.post("/api/models/sync", json={"limit": 1}, headers=as_key(reader)), 403, "FORBIDDEN")
    assert "manage" in refusal["message"] and "reader" in refusal["message"] and reader not in refusal["message"]
    assert_error(api.post(f"/api/chat/{keyed.tiny}", json=HELLO, headers=as_key(reader)), 403, "FORBIDDEN")
    assert_error(api.get("/api/audit", headers=as_key(reader)), 403, "FORBIDDEN")
    assert api.get("/metrics", headers=as_key(reader)).status_code == 403

    assert_error(api.get("/api/downloads/list", headers=as_key(manager)), 403, "FORBIDDEN")
    assert_success(api.put(f"/api/deployments/{keyed.tiny}/restart", headers=as_key(manager)))

    scraped = api.get("/metrics", headers=as_key(watcher))
    assert scraped.status_code == 200 and "llm_manager_http_requests" in scraped.text
    assert api.get("/api/metrics/targets", headers=as_key(watcher)).status_code == 200
    assert_error(api.get("/api/system/load", headers=as_key(watcher)), 403, "FORBIDDEN")

    wait_for(lambda: api.get(f"/api/deployments/{keyed.tiny}", headers=as_key(reader)).json()["data"]["status"]
             == "running", 60, what="the restarted deployment")
    chat = api.post(f"/api/chat/{keyed.tiny}", json=HELLO, headers=as_key(chatter))
    assert_success(chat)
    openai = api.post("/v1/chat/completions", json={**HELLO, "model": "tiny"}, headers=as_key(chatter))
    assert openai.status_code == 200 and openai.json()["object"] == "chat.completion"
    assert api.get("/v1/models", headers=as_key(chatter)).status_code == 200  # every OpenAI client lists first
    forbidden = api.post("/v1/chat/completions", json={**HELLO, "model": "tiny"}, headers=as_key(reader))
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "FORBIDDEN"

    # The downloads' live stream is reading.
    ws_url = keyed.url.replace("http://", "ws://") + "/ws/downloads"
    with connect(ws_url, additional_headers={"X-API-Key": reader}, open_timeout=10) as socket:
        assert '"snapshot"' in socket.recv(timeout=10)
    with pytest.raises(InvalidStatus):
        connect(ws_url, additional_headers={"X-API-Key": chatter}, open_timeout=10)

    assert_success(api.get("/api/keys", headers=as_key(admin)))
    assert_error(api.get("/api/keys", headers=as_key(chatter)), 403, "FORBIDDEN")
    # The environment's key keeps every scope.
    for path in ("/api/keys", "/api/audit", "/api/downloads/list", "/metrics"):
        assert api.get(path, headers=as_key(ENV_KEY)).status_code == 200, path


def test_a_key_limited_to_some_models_uses_only_those(api, keyed):
    others = new_key(keyed, "others-only", "--scopes", "inference,read", "--models", "qwen*,mistral")
    tiny_only = new_key(keyed, "tiny-only", "--scopes", "inference", "--models", "test-org/tiny-*")
    refusal = assert_error(api.post(f"/api/chat/{keyed.tiny}", json=HELLO, headers=as_key(others)), 403, "FORBIDDEN")
    assert TINY_REPO in refusal["message"]
    for model in ("tiny", TINY_REPO, keyed.tiny):
        answer = api.post("/v1/chat/completions", json={**HELLO, "model": model}, headers=as_key(others))
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "FORBIDDEN", model
    assert api.get("/v1/models", headers=as_key(others)).json()["data"] == []
    assert_success(api.post(f"/api/chat/{keyed.tiny}", json=HELLO, headers=as_key(tiny_only)))
    answer = api.post("/v1/chat/completions", json={**HELLO, "model": "tiny"}, headers=as_key(tiny_only))
    assert answer.status_code == 200
    assert [model["id"] for model in api.get("/v1/models", headers=as_key(tiny_only)).json()["data"]] == ["tiny"]


def test_expired_and_revoked_keys_are_refused_saying_so_and_revocation_takes_effect_within_5_s(api, keyed):
    soon = (datetime.now(timezone.utc) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    brief = new_key(keyed, "brief", "--scopes", "read", "--expires", soon)
    assert_success(api.get("/api/system/load", headers=as_key(brief)))
    expired = wait_for(lambda: (r := api.get("/api/system/load", headers=as_key(brief))).status_code == 401 and r,
                       10, what="the key to expire")
    assert "expired" in assert_error(expired, 401, "UNAUTHORIZED")["message"]

    doomed = new_key(keyed, "doomed", "--scopes", "read,inference")
    for _ in range(3):  # seen, and so cached, by the service
        assert_success(api.get("/api/system/load", headers=as_key(doomed)))
    keyed.manage("apikey", "revoke", "doomed", check=True)
    revoked_at = time.monotonic()
    refused = wait_for(lambda: (r := api.get("/api/system/load", headers=as_key(doomed))).status_code == 401 and r,
                       10, interval=0.05, what="the revocation")
    assert time.monotonic() - revoked_at <= 5
    assert "revoked" in assert_error(refused, 401, "UNAUTHORIZED")["message"]
    openai = api.post("/v1/chat/completions", json={**HELLO, "model": "tiny"}, headers=as_key(doomed))
    assert openai.status_code == 401 and "revoked" in openai.json()["error"]["message"]
    assert_error(api.get("/api/system/load", headers=as_key("nosuch12.abc")), 401, "UNAUTHORIZED")
    assert_error(api.get("/api/system/load", headers=as_key("garbage")), 401, "UNAUTHORIZED")
    listed = keyed.manage("apikey", "list", check=True).stdout
    assert re.search(r"doomed .* revoked", listed) and re.search(r"brief .* expired", listed)
    assert doomed not in listed and doomed.split(".")[1] not in keyed.log()


def test_limits_per_minute_answer_429_with_retry_after_then_accept_again(api, keyed, start_service):
    """Requests per minute counted in the database (no Redis) and in Redis (another service, REDIS_URL), and
    tokens per minute; all are accepted again once the minute is over."""
    shared = start_service({"REDIS_URL": "redis://127.0.0.1:6379/9"})
    counted = {"database": (keyed, new_key(keyed, "three-a-minute", "--scopes", "read", "--rpm", "3")),
               "redis": (shared, new_key(shared, "three-a-minute", "--scopes", "read", "--rpm", "3"))}
    if datetime.now().second >= 50:  # all the requests of a case inside one minute
        time.sleep(61 - datetime.now().second)
    waits = []
    for where, (service, key) in counted.items():
        with service.client() as client:
            wait_for(lambda: client.get("/api/system/load", headers=as_key(key)).status_code != 401, 5,
                     what="the key to be known")
            answers = [client.get("/api/system/load", headers=as_key(key)) for _ in range(4)]
            statuses = [answer.status_code for answer in answers]
            assert 429 in statuses and statuses.count(200) <= 3, (where, statuses)
            limited = answers[statuses.index(429)]
            assert_error(limited, 429, "RATE_LIMITED")
            waits.append(int(limited.headers["Retry-After"]))
            assert 1 <= waits[-1] <= 60
    thrifty = new_key(keyed, "thrifty", "--scopes", "inference", "--tpm", "5")
    assert api.post("/v1/chat/completions", json={**HELLO, "model": "tiny"}, headers=as_key(thrifty)).status_code == 200
    over = wait_for(lambda: (r := api.post("/v1/chat/completions", json={**HELLO, "model": "tiny"},
                                           headers=as_key(thrifty))).status_code == 429 and r, 5,
                    what="the tokens to be counted")
    assert over.json()["error"]["code"] == "RATE_LIMITED" and int(over.headers["Retry-After"]) >= 1
    time.sleep(max(waits + [int(over.headers["Retry-After"])]) + 1)
    for where, (service, key) in counted.items():
        with service.client() as client:
            assert client.get("/api/system/load", headers=as_key(key)).status_code == 200, where
    assert api.post("/v1/chat/completions", json={**HELLO, "model": "tiny"}, headers=as_key(thrifty)).status_code == 200


def test_usage_per_key_adds_up_to_the_tokens_the_answers_reported(api, keyed):
    key = new_key(keyed, "counted", "--scopes", "inference")
    prompt = completion = 0
    for _ in range(3):
        usage = assert_success(api.post(f"/api/chat/{keyed.tiny}", json=HELLO, headers=as_key(key)))["usage"]
        prompt, completion = prompt + usage["prompt_tokens"], completion + usage["completion_tokens"]
    # A stream, counted too: llama.cpp reports no usage in streams, so the service counts its chunks (one token
    # each) and the prompt's tokens (the same prompt as above).
    with api.stream("POST", "/v1/chat/completions", headers=as_key(key),
                    json={**HELLO, "model": "tiny", "stream": True}) as answer:
        chunks = [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data: {")]
    prompt += usage["prompt_tokens"]
    completion += sum(1 for chunk in chunks if chunk["choices"] and chunk["choices"][0]["delta"].get("content"))

    def counted():
        series = assert_success(api.get("/api/usage", params={"group_by": "key"}, headers=as_key(ENV_KEY)))["series"]
        return next((entry for entry in series if entry["key"] == "counted"), None)

    entry = wait_for(lambda: (e := counted()) and sum(p["requests"] for p in e["points"]) == 4 and e, 5,
                     what="the usage flush")
    assert sum(point["prompt_tokens"] for point in entry["points"]) == prompt
    assert sum(point["completion_tokens"] for point in entry["points"]) == completion
    assert sum(point["errors"] for point in entry["points"]) == 0
    metrics = api.get("/metrics", headers=as_key(ENV_KEY)).text
    assert re.search(r'llm_manager_inference_requests_total\{deployment="tiny",key="counted",model="[^"]+"\} 4\.0',
                     metrics), metrics[:2000]


def test_each_state_changing_call_leaves_one_audit_record_naming_who_made_it(api, keyed):
    before = assert_success(api.get("/api/audit", params={"page_size": 1}, headers=as_key(ENV_KEY)))["items"]
    last_id = before[0]["id"] if before else 0
    ops = new_key(keyed, "ops", "--scopes", "manage,read")
    as_ops = as_key(ops)
    second = assert_success(api.post("/api/deployments/start", headers=as_ops, json={
        "model_id": TINY_REPO, "model_source": "huggingface", "max_model_len": 256, "name": "second"}))["deployment_id"]
    wait_for(lambda: api.get(f"/api/deployments/{second}", headers=as_ops).json()["data"]["status"] == "running", 60,
             what="the second deployment")
    assert_success(api.post(f"/api/models/{TINY_REPO}/favorite?source=huggingface", headers=as_ops), 201)
    assert_success(api.delete(f"/api/models/{TINY_REPO}/favorite?source=huggingface", headers=as_ops))
    task = assert_success(api.post("/api/downloads/start", headers=as_ops,
                                   json={"model_id": TINY_REPO, "source": "huggingface"}))["task"]
    assert_error(api.put(f"/api/downloads/{task['id']}/pause", headers=as_ops), 400, "INVALID_ACTION")
    assert_success(api.put(f"/api/deployments/{second}/stop", headers=as_ops))
    # A command, as the operator's system user…
    keyed.manage("restart", "second", check=True)
    # …and the console, as its signed-in user.
    with keyed.console_client(*OPERATOR) as console:
        answer = console.post(f"/admin/deployments/deployment/{second}/act/stop/",
                              data={"csrfmiddlewaretoken": console.cookies["csrftoken"]})
        assert answer.status_code == 302
        created = console.post("/admin/core/apikey/add/", data={
            "csrfmiddlewaretoken": console.cookies["csrftoken"], "name": "from-console", "scopes": ["read"],
            "allowed_models": "", "requests_per_minute": "", "tokens_per_minute": "", "_save": "Save"},
            follow_redirects=True)
        assert created.status_code == 200 and "The API key for from-console is" in created.text
        # The console's generic forms, which call no service, are recorded from the admin's own log.
        added = console.post("/admin/catalog/favorite/add/", data={
            "csrfmiddlewaretoken": console.cookies["csrftoken"], "model_id": "console/pick",
            "source": "huggingface", "_continue": "Save"})
        assert added.status_code == 302, added.text[:500]
        favorite = added.headers["location"].rstrip("/").split("/")[-2]  # …/favorite/PK/change/
        deleted = console.post(f"/admin/catalog/favorite/{favorite}/delete/", data={
            "csrfmiddlewaretoken": console.cookies["csrftoken"], "post": "yes"})
        assert deleted.status_code == 302, deleted.text[:500]
        again = console.post("/admin/catalog/favorite/add/", data={
            "csrfmiddlewaretoken": console.cookies["csrftoken"], "model_id": "console/pick",
            "source": "huggingface", "_continue": "Save"})
        second_favorite = again.headers["location"].rstrip("/").split("/")[-2]
        bulk = console.post("/admin/catalog/favorite/", data={  # the list's "Delete selected", confirmed
            "csrfmiddlewaretoken": console.cookies["csrftoken"], "action": "delete_selected",
            "_selected_action": [second_favorite], "post": "yes"})
        assert bulk.status_code == 302, bulk.text[:500]
    assert_success(api.delete(f"/api/deployments/{second}", headers=as_key(ENV_KEY)))
    jobs = assert_success(api.post("/api/models/sync", json={"source": "huggingface", "limit": 1}, headers=as_ops),
                          202)
    assert_success(api.delete(f"/api/downloads/{task['id']}", headers=as_ops))  # the record; the files stay
    assert_success(api.delete("/api/keys/from-console", headers=as_key(ENV_KEY)))

    events = assert_success(api.get("/api/audit", params={"page_size": 100}, headers=as_key(ENV_KEY)))["items"]
    recorded = [(e["actor"], e["action"], e["object"], e["result"]) for e in reversed(events) if e["id"] > last_id]
    user = getpass.getuser()  # commands act as the system user that runs them
    assert recorded == [
        (user, "key.create", "ops", "success"),
        ("ops", "deployment.start", second, "success"),
        ("ops", "favorite.add", TINY_REPO, "success"),
        ("ops", "favorite.remove", TINY_REPO, "success"),
        ("ops", "download.start", task["id"], "success"),
        ("ops", "download.pause", task["id"], "INVALID_ACTION"),
        ("ops", "deployment.stop", second, "success"),
        (user, "deployment.restart", second, "success"),
        (OPERATOR[0], "deployment.stop", second, "success"),
        (OPERATOR[0], "key.create", "from-console", "success"),
        (OPERATOR[0], "console.add", f"catalog.favorite/{favorite}", "success"),
        (OPERATOR[0], "console.delete", f"catalog.favorite/{favorite}", "success"),
        (OPERATOR[0], "console.add", f"catalog.favorite/{second_favorite}", "success"),
        (OPERATOR[0], "console.delete", f"catalog.favorite/{second_favorite}", "success"),
        ("LLM_MANAGER_API_KEY", "deployment.delete", second, "success"),
        ("ops", "catalog.sync", "huggingface", "success"),
        ("ops", "download.delete", task["id"], "success"),
        ("LLM_MANAGER_API_KEY", "key.revoke", "from-console", "success"),
    ]
    assert jobs
    console_messages = [e["message"] for e in reversed(events) if e["action"].startswith("console.")]
    assert console_messages == ["huggingface:console/pick: Added.", "huggingface:console/pick"] * 2, console_messages
    kinds = assert_success(api.get("/api/audit", params={"object": "ops"}, headers=as_key(ENV_KEY)))["items"]
    assert [(e["actor_kind"], e["ip"]) for e in kinds] == [("command", "local")]
    by_ops = assert_success(api.get("/api/audit", params={"actor": "ops"}, headers=as_key(ENV_KEY)))["items"]
    assert len(by_ops) == 8 and all(e["ip"] == "127.0.0.1" and e["actor_kind"] == "key" for e in by_ops)
