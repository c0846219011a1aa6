"""ModelScope, the third source, end to end through the running service: search, info, a download paused, resumed
and interrupted by a SIGKILL of the worker, the layout ModelScope's own client reads, then a deployment on llama.cpp
that answers a chat."""

from __future__ import annotations

import hashlib
import signal
import time

import psutil
import pytest

from tests import world
from tests.engines import TINY_FILE, wait_deployment
from tests.envelope import assert_error, assert_success
from tests.service import wait_for

REPO = world.MODELSCOPE_TINY_REPO
BIG_FILE = "extra/big-shard.bin"
BIG_SHA256 = hashlib.sha256(world.BIG_WEIGHTS).hexdigest()


def test_search_and_info_speak_both_modelscope_apis(api):
    found = assert_success(api.get("/api/models/search", params={"query": "Qwen2", "source": "modelscope"}))
    qwen = next(item for item in found["items"] if item["id"] == "qwen/Qwen2-0.5B-Instruct")
    assert qwen["source"] == "modelscope" and qwen["downloads"] == 120000 and qwen["likes"] == 800
    assert qwen["model_type"] == "text-generation" and qwen["description"] == "通义千问 Qwen2 0.5B 指令模型"
    assert found["offline"] is False
    info = assert_success(api.get("/api/models/qwen/Qwen2-0.5B-Instruct/info", params={"source": "modelscope"}))
    assert {f["path"]: f["size"] for f in info["files"]} == {
        "README.md": 7, "config.json": 23, "model.safetensors": len(world.DIALOGPT_WEIGHTS)}
    assert info["updated_at"] == "2023-12-01T00:00:00Z"
    # Known to the catalog from ModelScope, the id needs no source any more.
    again = assert_success(api.get("/api/models/qwen/Qwen2-0.5B-Instruct/info"))
    assert again["source"] == "modelscope"
    # A model only the older API knows is described by it.
    legacy = assert_success(api.get("/api/models/damo/nlp_structbert_backbone/info", params={"source": "modelscope"}))
    assert legacy["description"] == "StructBERT, known only to the older API" and legacy["model_type"] == "fill-mask"
    assert legacy["created_at"] == "2023-01-01T00:00:00Z"
    categories = assert_success(api.get("/api/models/categories", params={"source": "modelscope"}))["categories"]
    assert {"name": "text-generation", "count": 1} in categories["modelscope"]


def test_the_fake_speaks_what_modelscopes_own_client_speaks(fake_modelscope, tmp_path):
    """The stand-in is faithful: ModelScope's client downloads a repository from it, verified, into its layout."""
    from modelscope_hub.compat.snapshot_download import snapshot_download

    path = snapshot_download("qwen/Qwen2-0.5B-Instruct", cache_dir=str(tmp_path), endpoint=fake_modelscope.url)
    assert path == str(tmp_path / "models" / "qwen--Qwen2-0.5B-Instruct" / "snapshots" / "master")
    assert (tmp_path / "models/qwen--Qwen2-0.5B-Instruct/snapshots/master/model.safetensors").read_bytes() == \
        world.DIALOGPT_WEIGHTS


def test_bad_modelscope_ids_and_revisions_are_refused_up_front(api):
    for bad in ("../../etc/passwd", "a/b/c", "owner/na..me", "/abs/path"):
        assert_error(api.post("/api/downloads/start", json={"model_id": bad, "source": "modelscope"}), 400,
                     "VALIDATION_ERROR")
    bad_revision = {"model_id": "qwen/Qwen2-0.5B-Instruct", "source": "modelscope", "revision": "../../x"}
    assert_error(api.post("/api/downloads/start", json=bad_revision), 400, "VALIDATION_ERROR")
    assert_error(api.get("/api/models/nobody/nothing/info", params={"source": "modelscope"}), 404, "MODEL_NOT_FOUND")
    missing = api.post("/api/downloads/start", json={"model_id": "nobody/nothing", "source": "modelscope"})
    assert_error(missing, 404, "MODEL_NOT_FOUND")


@pytest.fixture
def modelscope_tiny(fake_modelscope, tiny_gguf):
    """The tiny GGUF and an 8 MiB shard on the fake ModelScope, served at 512 KiB/s a connection."""
    fake_modelscope.add_repo(REPO, files={TINY_FILE: tiny_gguf.read_bytes(), BIG_FILE: world.BIG_WEIGHTS,
                                          "README.md": b"# tiny"},
                             pipeline_tag="text-generation", tags=["gguf"], downloads=7, likes=1,
                             card_data={"description": "A tiny llama on ModelScope"})
    fake_modelscope.bytes_per_second = 512 * 1024
    fake_modelscope.bytes_sent.clear()
    yield fake_modelscope
    fake_modelscope.bytes_per_second = None


def test_download_pause_resume_sigkill_then_deploy_and_chat(start_service, engine_env, modelscope_tiny):
    service = start_service({**engine_env, "LLM_MANAGER_DOWNLOAD_PART_THRESHOLD_MB": "1",
                             "LLM_MANAGER_DOWNLOAD_BACKOFF_SECONDS": "0.2", "LLM_MANAGER_DOWNLOAD_STALE_SECONDS": "3",
                             "MODELSCOPE_API_TOKEN": "ms-secret"})
    with service.client(timeout=60) as client:
        found = assert_success(client.get("/api/models/search", params={"query": "tiny-llama",
                                                                         "source": "modelscope"}))
        assert [item["id"] for item in found["items"]] == [REPO]
        info = assert_success(client.get(f"/api/models/{REPO}/info"))
        assert info["source"] == "modelscope" and info["quantizations"] == ["F32"]

        task = assert_success(client.post("/api/downloads/start", json={"model_id": REPO, "source": "modelscope"}))
        task = task["task"]
        assert task["revision"] == "master" and task["source"] == "modelscope"

        def downloaded() -> int:
            return assert_success(client.get(f"/api/downloads/{task['id']}"))["downloaded_bytes"]

        wait_for(lambda: downloaded() > 1024 * 1024, 30, what="1 MiB downloaded")
        assert assert_success(client.put(f"/api/downloads/{task['id']}/pause"))["status"] == "paused"
        time.sleep(1.0)  # the transfer stops within a second
        settled = downloaded()
        time.sleep(1.0)
        assert downloaded() == settled
        assert 0 < settled < len(world.BIG_WEIGHTS)
        assert_success(client.put(f"/api/downloads/{task['id']}/resume"))
        wait_for(lambda: downloaded() > settled + 1024 * 1024, 30, what="1 MiB more after resuming")
        serve = psutil.Process(service.process.pid)
        cluster = [p for p in serve.children() if "qcluster" in " ".join(p.cmdline())]
        for process in [*cluster, *cluster[0].children(recursive=True)]:
            process.send_signal(signal.SIGKILL)
        done = wait_for(lambda: (t := assert_success(client.get(f"/api/downloads/{task['id']}")))["status"]
                        in ("completed", "failed") and t, 90, what="the download to finish")
        assert done["status"] == "completed", done
        # Resumed, not restarted: at most one part of the shard fetched twice.
        assert modelscope_tiny.bytes_sent[BIG_SHA256] <= len(world.BIG_WEIGHTS) * 5 // 4

        # Where ModelScope's snapshot_download looks, each file verified and in place.
        snapshot = service.data_dir / "models/modelscope/models/modelscope-org--tiny-llama-GGUF/snapshots/master"
        assert hashlib.sha256((snapshot / BIG_FILE).read_bytes()).hexdigest() == BIG_SHA256
        assert (snapshot / TINY_FILE).read_bytes()[:4] == b"GGUF" and (snapshot / "README.md").exists()
        assert not list(snapshot.rglob("*.llmpart"))
        # The token went to ModelScope itself, never to the CDN its large files redirect to.
        api_calls = modelscope_tiny.requests_to(r"^/api/v1/models/modelscope-org")
        cdn_calls = modelscope_tiny.requests_to(r"^/__storage/")
        assert api_calls and all(r["headers"].get("authorization") == "Bearer ms-secret" for r in api_calls)
        assert cdn_calls and not any("authorization" in r["headers"] for r in cdn_calls)
        assert all(r["host"].startswith("localhost") for r in cdn_calls)

        # ModelScope's own client, given our models dir as its cache, finds every file there and fetches none.
        from modelscope_hub.compat.snapshot_download import snapshot_download

        served = len(modelscope_tiny.requests)
        found = snapshot_download(REPO, cache_dir=str(service.data_dir / "models" / "modelscope"),
                                  endpoint=modelscope_tiny.url)
        assert found == str(snapshot)
        assert not [r for r in modelscope_tiny.requests[served:] if "FilePath=" in r["path"] or "/__storage/" in r["path"]]
        listed = assert_success(client.get("/api/models/search", params={"query": "tiny-llama",
                                                                         "source": "modelscope"}))
        assert listed["items"][0]["downloaded"] is True

        deployment = assert_success(client.post("/api/deployments/start", json={
            "model_id": REPO, "model_source": "modelscope", "max_model_len": 256}))
        assert deployment["engine"] == "llama.cpp"
        running = wait_deployment(client, deployment["deployment_id"], {"running", "error"})
        assert running["status"] == "running", running
        chat = assert_success(client.post(f"/api/chat/{deployment['deployment_id']}", json={
            "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}))
        assert chat["model"] == REPO and chat["choices"][0]["message"]["role"] == "assistant"
        # Its files stay while the deployment runs.
        assert_error(client.delete(f"/api/downloads/{task['id']}", params={"delete_files": "true"}), 409,
                     "MODEL_IN_USE")
        assert_success(client.delete(f"/api/deployments/{deployment['deployment_id']}"))
        assert_success(client.delete(f"/api/downloads/{task['id']}", params={"delete_files": "true"}))
        assert not snapshot.exists()
        assert_error(client.post("/api/deployments/start", json={"model_id": REPO, "model_source": "modelscope"}),
                     400, "MODEL_NOT_DOWNLOADED")
