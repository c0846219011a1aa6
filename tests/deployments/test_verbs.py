"""The operators' verbs on a real llama.cpp deployment: deploy with engine flags, ps, logs (plain and JSON), chat with
the answer streamed, restart and stop, rm; and a search with `models`."""

from __future__ import annotations

import json

from tests.engines import TINY_REPO, download, wait_deployment
from tests.envelope import assert_success


def test_deploy_ps_logs_chat_restart_stop_and_rm(start_service, engine_env, tiny_gguf):
    service = start_service(engine_env)
    with service.client(timeout=60) as client:
        download(client, TINY_REPO)
        found = service.manage("models", "tiny-llama", "--source", "huggingface")
        assert found.returncode == 0 and f"* huggingface {TINY_REPO}" in found.stdout

        deployed = service.manage("deploy", TINY_REPO, "--source", "huggingface", "--max-model-len", "256",
                         "--engine-arg=--n_threads", "--engine-arg=1", "--env", "TINY_FLAG=yes")
        assert deployed.returncode == 0, deployed.stderr
        deployment_id = deployed.stdout.split(":")[0]
        shown = assert_success(client.get(f"/api/deployments/{deployment_id}"))
        assert shown["engine_args"] == ["--n_threads", "1"] and shown["env"] == {"TINY_FLAG": "yes"}

        listing = service.manage("ps")
        assert deployment_id in listing.stdout and "running" in listing.stdout and "llama.cpp" in listing.stdout
        logs = service.manage("logs", deployment_id, "-n", "5")
        assert logs.returncode == 0 and len(logs.stdout.splitlines()) == 5
        as_json = [json.loads(line) for line in service.manage("logs", deployment_id, "-n", "3", "--json")
                   .stdout.splitlines()]
        assert len(as_json) == 3 and all(entry["deployment_id"] == deployment_id for entry in as_json)

        chat = service.manage("chat", deployment_id, "--max-tokens", "4", stdin="Hi\nAnd again\n\n")
        assert chat.returncode == 0, chat.stderr
        assert len(chat.stdout.splitlines()) == 2  # one streamed answer a question
        by_model = service.manage("chat", TINY_REPO, "--max-tokens", "2", stdin="Hi\n")
        assert by_model.returncode == 0, by_model.stderr

        restarted = service.manage("restart", deployment_id)
        assert restarted.returncode == 0 and restarted.stdout.startswith(f"{deployment_id}: ")
        assert wait_deployment(client, deployment_id, {"running", "error"})["status"] == "running"
        stopped = service.manage("stop", deployment_id)
        assert stopped.returncode == 0 and stopped.stdout.strip() == f"{deployment_id}: stopped"
        assert service.manage("chat", deployment_id, stdin="Hi\n").returncode == 1
        assert "DEPLOYMENT_NOT_FOUND" in service.manage("stop", "no-such-deployment").stderr

        removed = service.manage("rm", TINY_REPO, "--source", "huggingface")
        assert removed.returncode == 0, removed.stderr
        assert f"huggingface:{TINY_REPO} removed" in removed.stdout
        assert "0 model(s)" in service.manage("ls").stdout
        assert not (service.data_dir / "models/huggingface/hub/models--test-org--tiny-llama-GGUF").exists()
