"""Embeddings: a deployment started with task embed on the real llama.cpp engine, through the OpenAI SDK and the
contract's envelope; refused where the deployment or the engine cannot embed."""

from __future__ import annotations

import pytest

from tests.engines import deploy, download, wait_deployment
from tests.envelope import assert_error, assert_success
from tests.service import wait_for

pytest.importorskip("llama_cpp", reason="llama-cpp-python[server] is not installed")

EMBED_REPO = "test-org/tiny-embed-GGUF"
DIMENSION = 32  # the tiny model's embedding length


def test_embeddings_from_a_deployment_started_for_them(start_service, engine_env, fake_hub, tiny_gguf,
                                                       tmp_path):
    from openai import BadRequestError, OpenAI

    from tests.engines import TINY_REPO
    from tests.fakes.tiny_gguf import write_tiny_gguf

    pooled = write_tiny_gguf(tmp_path / "embed.F32.gguf", pooled=True, seed=3)
    fake_hub.add_repo(EMBED_REPO, files={"embed.F32.gguf": pooled.read_bytes()}, library_name="gguf")
    service = start_service(engine_env)
    with service.client(timeout=60) as client:
        download(client, EMBED_REPO)
        download(client, TINY_REPO)
        embedder = assert_success(deploy(client, model_id=EMBED_REPO, name="embedder", task="embed"))
        chat = assert_success(deploy(client, model_id=TINY_REPO, name="chatter"))
        for started in (embedder, chat):
            assert wait_deployment(client, started["deployment_id"], {"running", "error"})["status"] == "running"
        shown = assert_success(client.get(f"/api/deployments/{embedder['deployment_id']}"))
        assert shown["task"] == "embed" and "--embedding" in shown["command"]

        sdk = OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0)
        answer = sdk.embeddings.create(model="embedder", input=["a cat", "a dog on the mat"])
        assert [item.index for item in answer.data] == [0, 1]
        assert all(len(item.embedding) == DIMENSION for item in answer.data)
        assert answer.data[0].embedding != answer.data[1].embedding
        assert answer.usage.prompt_tokens > 0 and answer.model == EMBED_REPO

        enveloped = assert_success(client.post(f"/api/embeddings/{embedder['deployment_id']}",
                                               json={"input": "hello"}))
        assert len(enveloped["data"]) == 1 and len(enveloped["data"][0]["embedding"]) == DIMENSION
        usage = wait_for(lambda: (u := assert_success(client.get(f"/api/deployments/{embedder['deployment_id']}"))[
            "usage"]) and u["requests"] == 2 and u, 10, what="usage counted")
        assert usage["prompt_tokens"] >= answer.usage.prompt_tokens and usage["errors"] == 0

        # A deployment started for chat does not embed, and says how to get one that does.
        with pytest.raises(BadRequestError) as refused:
            sdk.embeddings.create(model="chatter", input="hello")
        assert refused.value.body["code"] == "EMBEDDINGS_NOT_SUPPORTED"
        assert_error(client.post(f"/api/embeddings/{chat['deployment_id']}", json={"input": "x"}), 400,
                     "EMBEDDINGS_NOT_SUPPORTED")
        for bad in ({"input": []}, {"input": 5}, {"input": ["a", 1]}, {"input": [[]]}, {}):
            assert_error(client.post(f"/api/embeddings/{embedder['deployment_id']}", json=bad), 400,
                         "VALIDATION_ERROR")
        # An engine that cannot embed refuses the task before anything starts.
        download(client, "microsoft/DialoGPT-medium")
        assert_error(deploy(client, model_id="microsoft/DialoGPT-medium", engine="transformers", task="embed"),
                     400, "EMBEDDINGS_NOT_SUPPORTED")
        for started in (embedder, chat):
            assert_success(client.delete(f"/api/deployments/{started['deployment_id']}"))
