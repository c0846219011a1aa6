"""Models the machine already has, registered in place: a real Hugging Face cache made by huggingface_hub from the
fake hub, a real Ollama-layout store, and a GGUF file by path; then deployed like any other."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from huggingface_hub import snapshot_download

from tests import world
from tests.engines import TINY_FILE, TINY_REPO, deploy, download, wait_deployment
from tests.envelope import assert_error, assert_success
from tests.service import REPO_ROOT


def _import(client, **body):
    return client.post("/api/models/import", json=body)


def test_a_hugging_face_cache_is_imported_in_place_and_deploys(start_service, engine_env, fake_hub, tiny_gguf,
                                                               tmp_path):
    cache = tmp_path / "hf-cache"
    snapshot_download(TINY_REPO, cache_dir=cache, endpoint=fake_hub.url)
    snapshot_download("microsoft/DialoGPT-medium", cache_dir=cache, endpoint=fake_hub.url)
    before = {path: path.stat().st_mtime_ns for path in cache.rglob("*") if path.is_file()}
    service = start_service({**engine_env, "HF_HUB_CACHE": str(cache)})
    with service.client(timeout=60) as client:
        result = assert_success(_import(client))
        imported = {task["model_id"]: task for task in result["imported"]}
        assert set(imported) == {TINY_REPO, "microsoft/DialoGPT-medium"} and result["skipped"] == []
        tiny = imported[TINY_REPO]
        assert tiny["status"] == "completed" and tiny["imported"] is True and tiny["source"] == "huggingface"
        assert tiny["storage_path"] == str(cache / "models--test-org--tiny-llama-GGUF")
        assert tiny["total_bytes"] == tiny_gguf.stat().st_size + len(b"# tiny")
        # A second import finds the same records.
        again = assert_success(_import(client))
        assert again["imported"] == [] and {t["id"] for t in again["existing"]} == {t["id"] for t in imported.values()}
        assert not list((service.data_dir / "models").rglob("*.gguf"))  # nothing was copied

        deployment = assert_success(deploy(client))
        running = wait_deployment(client, deployment["deployment_id"], {"running", "error"})
        assert running["status"] == "running", running
        info = assert_success(client.get(f"/api/deployments/{deployment['deployment_id']}/model-info"))
        assert info["path"].startswith(str(cache))
        chat = assert_success(client.post(f"/api/chat/{deployment['deployment_id']}", json={
            "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}))
        assert chat["choices"][0]["message"]["role"] == "assistant"
        assert_success(client.delete(f"/api/deployments/{deployment['deployment_id']}"))

        # Deleting with files keeps what the service did not download, unless asked explicitly.
        kept = assert_success(client.delete(f"/api/downloads/{imported['microsoft/DialoGPT-medium']['id']}",
                                            params={"delete_files": "true"}))
        assert kept["deleted_files"] == []
        assert (cache / "models--microsoft--DialoGPT-medium").exists()
        gone = assert_success(client.delete(f"/api/downloads/{tiny['id']}",
                                            params={"delete_files": "true", "delete_imported": "true"}))
        assert gone["deleted_files"] == [str(cache / "models--test-org--tiny-llama-GGUF")]
        assert not (cache / "models--test-org--tiny-llama-GGUF").exists()
    unchanged = {path: path.stat().st_mtime_ns for path in cache.rglob("*") if path.is_file()}
    assert {p: m for p, m in before.items() if p in unchanged} == {p: m for p, m in unchanged.items() if p in before}


def test_an_ollama_store_is_imported_with_its_blobs_checked(start_service, engine_env, need_registry, tmp_path):
    # A real Ollama-layout store: the one a download through the service leaves.
    first = start_service(engine_env)
    with first.client(timeout=60) as client:
        download(client, "tiny-test:latest", source="ollama")
    store = first.data_dir / "models" / "ollama"
    second = start_service({**engine_env, "OLLAMA_MODELS": str(store)})
    with second.client(timeout=60) as client:
        result = assert_success(_import(client, source="ollama"))
        (task,) = result["imported"]
        assert task["model_id"] == "tiny-test:latest" and task["source"] == "ollama" and task["imported"]
        layers = {f["path"]: f["size"] for f in task["files"]}
        config_size = len(__import__("json").dumps(world.TINY_OLLAMA_CONFIG).encode())
        assert sorted(layers.values()) == sorted([config_size, *(len(data) for _, data in world.TINY_OLLAMA_LAYERS)])
        info = assert_success(client.get("/api/models/tiny-test:latest/info"))
        assert info["downloaded"] is True

        # A blob whose bytes no longer match its digest is reported and not registered.
        assert_success(client.delete(f"/api/downloads/{task['id']}"))
        model_blob = next(store.glob("blobs/sha256-*"))
        data = bytearray(model_blob.read_bytes())
        data[0] ^= 0xFF
        model_blob.write_bytes(bytes(data))
        corrupt = assert_success(_import(client, source="ollama"))
        assert corrupt["imported"] == [] and corrupt["skipped"][0]["model_id"] == "tiny-test:latest"
        assert "do not match" in corrupt["skipped"][0]["problem"]


def test_a_gguf_by_path_imports_as_a_local_model_and_bad_paths_are_refused(start_service, engine_env, tiny_gguf,
                                                                          tmp_path):
    service = start_service(engine_env)
    with service.client(timeout=60) as client:
        (task,) = assert_success(_import(client, path=str(tiny_gguf)))["imported"]
        assert task["source"] == "local" and task["model_id"] == tiny_gguf.stem
        assert task["files"] == [{"path": TINY_FILE, "size": tiny_gguf.stat().st_size, "downloaded_bytes":
                                  tiny_gguf.stat().st_size, "status": "completed", "sha256": None, "error": None}]
        assert assert_success(_import(client, path=str(tiny_gguf)))["existing"][0]["id"] == task["id"]
        info = assert_success(client.get(f"/api/models/{tiny_gguf.stem}/info", params={"source": "local"}))
        assert info["downloaded"] is True and info["size_gb"] is not None
        missing = assert_error(_import(client, path=str(tmp_path / "nothing-here")), 400, "VALIDATION_ERROR")
        assert str(tmp_path / "nothing-here") in missing["message"]
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "notes.txt").write_text("no model")
        empty = assert_error(_import(client, path=str(tmp_path / "empty")), 400, "VALIDATION_ERROR")
        assert str(tmp_path / "empty") in empty["message"]
        assert_error(_import(client, path=str(tiny_gguf), name="../evil"), 400, "VALIDATION_ERROR")
        assert_error(_import(client, source="nowhere"), 400, "INVALID_SOURCE")

        deployment = assert_success(deploy(client, model_id=tiny_gguf.stem, source="local"))
        assert wait_deployment(client, deployment["deployment_id"], {"running", "error"})["status"] == "running"
        assert_success(client.delete(f"/api/deployments/{deployment['deployment_id']}"))
        assert_success(client.delete(f"/api/downloads/{task['id']}", params={"delete_files": "true"}))
    assert hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()  # the file is still there
    command = subprocess.run([sys.executable, "manage.py", "import", "--path", str(tiny_gguf), "--name", "tiny-cli"],
                             cwd=REPO_ROOT, env=service.env, capture_output=True, text=True, timeout=120)
    assert command.returncode == 0 and "imported  local:tiny-cli" in command.stdout, command.stderr
