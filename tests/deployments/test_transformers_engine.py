"""A tiny random transformers model, downloaded into our Hugging Face cache and served by `transformers serve`."""

import pytest

from tests.engines import deploy, download, wait_deployment
from tests.envelope import assert_success

pytest.importorskip("torch", reason="torch is not installed")
pytest.importorskip("transformers", reason="transformers[serving] is not installed")

HF_REPO = "test-org/tiny-llama-hf"


def test_transformers_serve_deploys_a_safetensors_model(start_service, engine_env, tiny_gguf, fake_hub,
                                                       tmp_path):
    from tests.fakes.tiny_transformers import write_tiny_transformers_model

    files = write_tiny_transformers_model(tmp_path / "tiny-hf", tiny_gguf)
    fake_hub.add_repo(HF_REPO, files=files, library_name="transformers", pipeline_tag="text-generation")
    service = start_service(engine_env)
    with service.client(timeout=120) as client:
        download(client, HF_REPO)
        started = assert_success(deploy(client, model_id=HF_REPO, name="tiny-hf"))
        assert started["engine"] == "transformers"
        running = wait_deployment(client, started["deployment_id"], {"running", "error"}, timeout=120)
        assert running["status"] == "running", running
        info = assert_success(client.get(f"/api/deployments/{started['deployment_id']}/model-info"))
        assert info["engine_models"]["data"] and info["format"] == "safetensors"
        assert info["layers"] == 2 and info["hidden_size"] == 32
        chat = assert_success(client.post(f"/api/chat/{started['deployment_id']}",
                                          json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}))
        assert chat["model"] == HF_REPO and chat["choices"][0]["message"]["role"] == "assistant"
        assert_success(client.delete(f"/api/deployments/{started['deployment_id']}"))
