"""Helpers for tests that download the tiny GGUF and deploy it on the real llama.cpp engine."""

from tests.envelope import assert_success
from tests.service import wait_for

TINY_REPO = "test-org/tiny-llama-GGUF"
TINY_FILE = "tiny-llama.F32.gguf"


def download(client, model_id, source="huggingface"):
    task = assert_success(client.post("/api/downloads/start", json={"model_id": model_id, "source": source}))["task"]
    done = wait_for(lambda: (t := assert_success(client.get(f"/api/downloads/{task['id']}")))["status"]
                    in ("completed", "failed") and t, 60, what="the download")
    assert done["status"] == "completed", done
    return done


def deploy(client, model_id=TINY_REPO, source="huggingface", **extra):
    return client.post("/api/deployments/start", json={"model_id": model_id, "model_source": source,
                                                       "max_model_len": 256, **extra})


def wait_deployment(client, deployment_id, statuses, timeout=60):
    return wait_for(lambda: (d := assert_success(client.get(f"/api/deployments/{deployment_id}")))["status"]
                    in statuses and d, timeout, interval=0.1, what=f"{deployment_id} to be {statuses}")
