"""Load on demand and unload when idle, on the real llama.cpp engine: call a downloaded model and it loads (once,
however many callers), leave it and it stops, call it again and it loads again."""

from __future__ import annotations

import threading
import time

import pytest

from tests.engines import TINY_REPO, deploy, download
from tests.envelope import assert_error, assert_success
from tests.service import wait_for

pytest.importorskip("llama_cpp", reason="llama-cpp-python[server] is not installed")

BROKEN_REPO = "test-org/broken-GGUF"
HUGE_REPO = "test-org/huge-GGUF"
HI = [{"role": "user", "content": "Hi"}]


def _deployments(client) -> list[dict]:
    return assert_success(client.get("/api/deployments/list"))["items"]


def _huge_header(tmp_path) -> bytes:
    """A GGUF header (no weights) of a model far too large for any machine: the memory check refuses it."""
    from gguf import GGUFWriter

    path = tmp_path / "huge.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(4096)
    writer.add_embedding_length(65536)
    writer.add_head_count(64)
    writer.add_head_count_kv(64)
    writer.add_context_length(2048)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    return path.read_bytes()


def test_a_call_loads_the_model_once_and_idleness_unloads_it(start_service, engine_env, fake_hub, tiny_gguf,
                                                             tmp_path):
    from openai import APIStatusError, NotFoundError, OpenAI

    fake_hub.add_repo(HUGE_REPO, files={"huge.Q4_K_M.gguf": _huge_header(tmp_path)}, library_name="gguf")
    fake_hub.add_repo(BROKEN_REPO, files={"broken.Q4_K_M.gguf": b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64},
                      library_name="gguf")
    service = start_service({**engine_env, "LLM_MANAGER_IDLE_TIMEOUT": "10"})
    sdk = OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0, timeout=120)
    with service.client(timeout=120) as client:
        download(client, TINY_REPO)
        listed = {model.id: model for model in sdk.models.list()}
        assert listed[TINY_REPO].model_extra["loaded"] is False and not _deployments(client)

        # Four callers at once: one start, four answers.
        answers, errors = [], []

        def call():
            try:
                answers.append(sdk.chat.completions.create(model=TINY_REPO, messages=HI, max_tokens=2))
            except Exception as exc:  # noqa: BLE001 — reported below
                errors.append(exc)

        callers = [threading.Thread(target=call) for _ in range(4)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(timeout=120)
        assert not errors and len(answers) == 4 and all(a.choices[0].message.role == "assistant" for a in answers)
        (loaded,) = _deployments(client)
        assert loaded["status"] == "running" and loaded["model_id"] == TINY_REPO and loaded["idle_timeout"] == 10
        assert {m.id: m for m in sdk.models.list()}[loaded["name"]].model_extra["loaded"] is True

        # Left alone for its idle_timeout, it stops (freeing its memory)…
        stopped = wait_for(lambda: (d := assert_success(client.get(f"/api/deployments/{loaded['deployment_id']}")))[
            "status"] == "stopped" and d, 30, interval=0.5, what="the idle deployment to stop")
        assert stopped["stop_reason"] == "idle" and stopped["pid"] is None
        # …and the next call loads it again: the same deployment, through /v1 by model and /api by id.
        again = sdk.chat.completions.create(model=TINY_REPO, messages=HI, max_tokens=2)
        assert again.choices and [d["deployment_id"] for d in _deployments(client)] == [loaded["deployment_id"]]
        assert_success(client.put(f"/api/deployments/{loaded['deployment_id']}/stop"))
        chat = assert_success(client.post(f"/api/chat/{loaded['deployment_id']}", json={"messages": HI,
                                                                                       "max_tokens": 2}))
        assert chat["choices"]
        assert assert_success(client.get(f"/api/deployments/{loaded['deployment_id']}"))["status"] == "running"

        # Nothing to load: the model is not downloaded.
        with pytest.raises(NotFoundError):
            sdk.chat.completions.create(model="test-org/never-downloaded", messages=HI, max_tokens=2)
        # A start that fails answers its error, every time, and never leaves a start to wait on.
        download(client, BROKEN_REPO)
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(APIStatusError) as failed:
                sdk.chat.completions.create(model=BROKEN_REPO, messages=HI, max_tokens=2)
            assert failed.value.status_code == 502 and failed.value.body["code"] == "ENGINE_ERROR"
            assert "did not start" in failed.value.body["message"] and time.monotonic() - started < 60
        broken = [d for d in _deployments(client) if d["model_id"] == BROKEN_REPO]
        assert len(broken) == 1 and broken[0]["status"] == "error"

        # A model that cannot fit: 409 with the figures, at once.
        download(client, HUGE_REPO)
        with pytest.raises(APIStatusError) as too_big:
            sdk.chat.completions.create(model=HUGE_REPO, messages=HI, max_tokens=2)
        assert too_big.value.status_code == 409 and too_big.value.body["code"] == "INSUFFICIENT_MEMORY"
        assert "are free" in too_big.value.body["message"]

        # idle_timeout: at least 10 seconds, a number.
        for bad in (5, "soon", 0):
            assert_error(deploy(client, model_id=TINY_REPO, idle_timeout=bad), 400, "VALIDATION_ERROR")
        for deployment in _deployments(client):
            assert_success(client.delete(f"/api/deployments/{deployment['deployment_id']}"))
