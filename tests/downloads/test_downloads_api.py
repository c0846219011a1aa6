"""Downloads end to end: the running service, a real worker cluster, the fake hub and a real registry."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from huggingface_hub import scan_cache_dir

from tests import world
from tests.downloads.conftest import BIG_SHA256, DIALOGPT_SHA256
from tests.envelope import assert_error, assert_success
from tests.service import REPO_ROOT, wait_for


def start(client, model_id, source="huggingface", **extra):
    return client.post("/api/downloads/start", json={"model_id": model_id, "source": source, **extra})


def task_of(client, task_id):
    return assert_success(client.get(f"/api/downloads/{task_id}"))


def wait_status(client, task_id, statuses, timeout=60):
    return wait_for(lambda: (t := task_of(client, task_id))["status"] in statuses and t, timeout, interval=0.1,
                    what=f"task {task_id} to be {statuses}")


def fresh(client, model_id):
    """Forget earlier tasks (and files) of the model so a test starts from nothing."""
    for task in assert_success(client.get("/api/downloads/list", params={"page_size": 100}))["items"]:
        if task["model_id"] == model_id:
            client.delete(f"/api/downloads/{task['id']}", params={"delete_files": "true"})


def test_hugging_face_download_lands_in_the_hub_cache_verified(dl, dl_service):
    fresh(dl, "microsoft/DialoGPT-medium")
    response = start(dl, "microsoft/DialoGPT-medium")
    data = assert_success(response)
    assert set(data) == {"task", "message"} and data["message"] == "下载任务已创建"
    task = data["task"]
    assert task["status"] in ("pending", "downloading") and task["model_id"] == "microsoft/DialoGPT-medium"
    assert task["source"] == "huggingface" and task["progress"] == 0 and task["created_at"].endswith("Z")
    done = wait_status(dl, task["id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert done["progress"] == 100 and done["downloaded_bytes"] == done["total_bytes"] > 4096
    assert {f["path"]: f["status"] for f in done["files"]} == {
        "README.md": "completed", "config.json": "completed", "pytorch_model.bin": "completed"}
    cache = dl_service.data_dir / "models" / "huggingface" / "hub"
    repos = {repo.repo_id: repo for repo in scan_cache_dir(cache).repos}
    repo = repos["microsoft/DialoGPT-medium"]
    (revision,) = repo.revisions
    assert {f.file_name for f in revision.files} == {"README.md", "config.json", "pytorch_model.bin"}
    assert "main" in revision.refs
    weights = revision.snapshot_path / "pytorch_model.bin"
    assert weights.is_symlink() and not os.path.isabs(os.readlink(weights))
    assert weights.read_bytes() == world.DIALOGPT_WEIGHTS
    assert (repo.repo_path / "blobs" / DIALOGPT_SHA256).exists()


def test_duplicate_start_returns_the_same_task(dl):
    fresh(dl, "TheBloke/TinyLlama-GGUF")
    first = assert_success(start(dl, "TheBloke/TinyLlama-GGUF", include=["*Q4_K_M.gguf"]))["task"]
    second = assert_success(start(dl, "TheBloke/TinyLlama-GGUF", include=["*Q4_K_M.gguf"]))["task"]
    assert second["id"] == first["id"]
    done = wait_status(dl, first["id"], {"completed", "failed"})
    assert [f["path"] for f in done["files"]] == ["tinyllama.Q4_K_M.gguf"]
    again = assert_success(start(dl, "TheBloke/TinyLlama-GGUF", include=["*Q4_K_M.gguf"]))
    assert again["task"]["id"] == first["id"] and again["task"]["status"] == "completed"


def test_ollama_download_in_ollama_layout_sharing_blobs(dl, dl_service, need_registry):
    fresh(dl, "tiny-test:latest")
    fresh(dl, "tiny-test:q4")
    task = assert_success(start(dl, "tiny-test", source="ollama"))["task"]
    assert task["model_id"] == "tiny-test:latest"
    done = wait_status(dl, task["id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    root = dl_service.data_dir / "models" / "ollama"
    host = need_registry.url.removeprefix("http://")
    manifest_path = root / "manifests" / host / "library" / "tiny-test" / "latest"
    raw = httpx.get(f"{need_registry.url}/v2/library/tiny-test/manifests/latest",
                    headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}).content
    assert manifest_path.read_bytes() == raw
    manifest = json.loads(raw)
    for blob in [manifest["config"], *manifest["layers"]]:
        path = root / "blobs" / blob["digest"].replace(":", "-")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == blob["digest"].removeprefix("sha256:")
    model_blob = root / "blobs" / manifest["layers"][0]["digest"].replace(":", "-")
    before = model_blob.stat().st_mtime_ns
    second = assert_success(start(dl, "tiny-test:q4", source="ollama"))["task"]
    assert wait_status(dl, second["id"], {"completed", "failed"})["status"] == "completed"
    assert model_blob.stat().st_mtime_ns == before  # the shared blob was not fetched again


def test_two_downloads_sharing_a_blob_fetch_it_once(start_service, need_registry):
    """Ollama models share blobs; two started at once take turns on the shared one (behind a relay capping each
    connection, so that both want it at the same time): neither fails, and its bytes come once."""
    from tests.fakes.throttled_proxy import ThrottledRelay

    shared = random.Random(7).randbytes(2 * 1024 * 1024)
    for name in ("shared-a", "shared-b"):
        need_registry.push_ollama_model(name, "latest", [("model", shared), ("params", name.encode())],
                                        {"model_format": "gguf", "model_family": "llama"})
    relay = ThrottledRelay(need_registry.port, 1024 * 1024).start()
    try:
        service = start_service({"LLM_MANAGER_OLLAMA_REGISTRY": relay.url,
                                 "LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB": "0.01"})
        with service.client() as client:
            tasks = [assert_success(start(client, f"{name}:latest", source="ollama"))["task"]
                     for name in ("shared-a", "shared-b")]
            for task in tasks:
                done = wait_status(client, task["id"], {"completed", "failed"}, timeout=60)
                assert done["status"] == "completed", done
        blob = service.data_dir / "models/ollama/blobs" / f"sha256-{hashlib.sha256(shared).hexdigest()}"
        assert blob.read_bytes() == shared
        assert relay.delivered < len(shared) * 1.5  # once, with manifests and small blobs, not twice
    finally:
        relay.stop()


def test_pause_keeps_bytes_and_resume_fetches_only_the_rest(dl, dl_service, throttled):
    fresh(dl, "test-org/big-model")
    task = assert_success(start(dl, "test-org/big-model"))["task"]
    wait_for(lambda: task_of(dl, task["id"])["downloaded_bytes"] > 2 * 1024 * 1024, 30, what="2 MiB downloaded")
    paused = assert_success(dl.put(f"/api/downloads/{task['id']}/pause"))
    assert paused["status"] == "paused"
    time.sleep(1.0)  # the transfer stops within a second
    settled = task_of(dl, task["id"])["downloaded_bytes"]
    sent_when_settled = throttled.bytes_sent.get(BIG_SHA256, 0)
    time.sleep(1.5)
    assert task_of(dl, task["id"])["downloaded_bytes"] == settled
    assert throttled.bytes_sent.get(BIG_SHA256, 0) == sent_when_settled
    assert 0 < settled < len(world.BIG_WEIGHTS)
    assert_error(dl.put(f"/api/downloads/{task['id']}/pause"), 400, "INVALID_ACTION")
    assert_success(dl.put(f"/api/downloads/{task['id']}/resume"))
    done = wait_status(dl, task["id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    blob = dl_service.data_dir / "models/huggingface/hub/models--test-org--big-model/blobs" / BIG_SHA256
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == BIG_SHA256
    # Bytes already on disk were not fetched again (a little slack for what was in flight).
    assert throttled.bytes_sent[BIG_SHA256] < len(world.BIG_WEIGHTS) * 1.1
    assert_error(dl.put(f"/api/downloads/{task['id']}/resume"), 400, "INVALID_ACTION")
    assert_error(dl.put(f"/api/downloads/{task['id']}/pause"), 400, "INVALID_ACTION")


def test_cancel_removes_partial_bytes(dl, dl_service, throttled):
    fresh(dl, "test-org/big-model")
    task = assert_success(start(dl, "test-org/big-model"))["task"]
    wait_for(lambda: task_of(dl, task["id"])["downloaded_bytes"] > 1024 * 1024, 30, what="1 MiB downloaded")
    cancelled = assert_success(dl.put(f"/api/downloads/{task['id']}/cancel"))
    assert cancelled["status"] == "cancelled"
    blobs = dl_service.data_dir / "models/huggingface/hub/models--test-org--big-model/blobs"
    wait_for(lambda: not list(blobs.glob("*.llmpart")), 5, what="partial bytes removed")
    assert not (blobs / BIG_SHA256).exists()
    assert_error(dl.put(f"/api/downloads/{task['id']}/resume"), 400, "INVALID_ACTION")
    assert_error(dl.put(f"/api/downloads/{task['id']}/cancel"), 400, "INVALID_ACTION")
    assert_success(dl.delete(f"/api/downloads/{task['id']}"))
    assert_error(dl.get(f"/api/downloads/{task['id']}"), 404, "TASK_NOT_FOUND")


def test_deleting_a_running_download_stops_it_and_leaves_nothing(dl, dl_service, throttled):
    fresh(dl, "test-org/big-model")
    task = assert_success(start(dl, "test-org/big-model"))["task"]
    wait_for(lambda: task_of(dl, task["id"])["downloaded_bytes"] > 1024 * 1024, 30, what="1 MiB downloaded")
    deleted = assert_success(dl.delete(f"/api/downloads/{task['id']}", params={"delete_files": "true"}))
    assert deleted["id"] == task["id"]
    time.sleep(1.0)  # the worker notices within a second
    sent = throttled.bytes_sent[BIG_SHA256]
    time.sleep(1.0)
    assert throttled.bytes_sent[BIG_SHA256] == sent  # no connection still fetching
    assert not list((dl_service.data_dir / "models/huggingface/hub").rglob("*big-model*/blobs/*"))
    assert "Traceback" not in dl_service.log()


def test_sigkill_of_the_worker_mid_file_resumes_and_verifies(dl, dl_service, throttled):
    fresh(dl, "test-org/big-model")
    task = assert_success(start(dl, "test-org/big-model"))["task"]
    wait_for(lambda: task_of(dl, task["id"])["downloaded_bytes"] > 3 * 1024 * 1024, 30, what="3 MiB downloaded")
    serve = psutil.Process(dl_service.process.pid)
    cluster = [p for p in serve.children() if "qcluster" in " ".join(p.cmdline())]
    assert cluster
    victims = [*cluster, *cluster[0].children(recursive=True)]
    for process in victims:
        process.send_signal(signal.SIGKILL)
    done = wait_status(dl, task["id"], {"completed", "failed"}, timeout=90)
    assert done["status"] == "completed", done
    blob = dl_service.data_dir / "models/huggingface/hub/models--test-org--big-model/blobs" / BIG_SHA256
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == BIG_SHA256
    part = len(world.BIG_WEIGHTS) // 4
    # At most one part's worth fetched twice (each part resumes from its own offset).
    assert throttled.bytes_sent[BIG_SHA256] <= len(world.BIG_WEIGHTS) + part


def test_one_resolve_per_file_and_again_only_when_storage_refuses(dl, dl_service, fake_hub):
    for expire_after in (None, 2):
        fresh(dl, "test-org/big-model")
        fake_hub.requests.clear()
        if expire_after is not None:
            fake_hub.expire_after[BIG_SHA256] = expire_after  # the signed URL expires after two ranges
        task = assert_success(start(dl, "test-org/big-model"))["task"]
        assert wait_status(dl, task["id"], {"completed", "failed"})["status"] == "completed"
        resolves = [r for r in fake_hub.requests_to("/test-org/big-model/resolve/[0-9a-f]+/model.safetensors")
                    if r["method"] == "GET"]
        ranges = fake_hub.requests_to(f"/__storage/{BIG_SHA256}")
        assert len(ranges) >= 4  # the file came in parts…
        # …through one resolve at the hub (its redirect is a round trip and counts against its rate limits), and
        # one more when storage refused the signed URL.
        assert len(resolves) == (1 if expire_after is None else 2), [r["path"] for r in resolves]
    blob = dl_service.data_dir / "models/huggingface/hub/models--test-org--big-model/blobs" / BIG_SHA256
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == BIG_SHA256


def test_a_corrupted_byte_is_caught_and_fetched_again(dl, fake_hub):
    fresh(dl, "microsoft/DialoGPT-medium")
    fake_hub.bytes_sent.clear()
    fake_hub.corrupt_times[DIALOGPT_SHA256] = 1
    task = assert_success(start(dl, "microsoft/DialoGPT-medium"))["task"]
    done = wait_status(dl, task["id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert fake_hub.bytes_sent[DIALOGPT_SHA256] == 2 * len(world.DIALOGPT_WEIGHTS)


def test_corruption_that_persists_fails_with_checksum_mismatch(dl, fake_hub):
    fresh(dl, "microsoft/DialoGPT-medium")
    fake_hub.corrupt_times[DIALOGPT_SHA256] = 2
    task = assert_success(start(dl, "microsoft/DialoGPT-medium"))["task"]
    done = wait_status(dl, task["id"], {"completed", "failed"})
    fake_hub.corrupt_times.clear()
    assert done["status"] == "failed" and done["error_code"] == "CHECKSUM_MISMATCH", done
    fresh(dl, "microsoft/DialoGPT-medium")


def test_gated_repo_needs_the_token_which_never_reaches_the_storage_host(dl, fake_hub, start_service):
    task = assert_success(start(dl, "meta-llama/Gated-Llama"))["task"]
    failed = wait_status(dl, task["id"], {"completed", "failed"})
    assert failed["status"] == "failed" and failed["error_code"] == "GATED_MODEL", failed
    fake_hub.token = "hf_secret"
    try:
        service = start_service({"HF_TOKEN": "hf_secret"})
        with service.client() as client:
            task = assert_success(start(client, "meta-llama/Gated-Llama"))["task"]
            assert wait_status(client, task["id"], {"completed", "failed"})["status"] == "completed"
    finally:
        fake_hub.token = None
    gated = [r for r in fake_hub.requests if "Gated-Llama" in r["path"] or "__storage" in r["path"]]
    hub_side = [r for r in gated if r["host"].startswith("127.0.0.1") and "/resolve/" in r["path"]]
    storage_side = [r for r in fake_hub.requests if r["host"].startswith("localhost")]
    assert any(r["headers"].get("authorization") == "Bearer hf_secret" for r in hub_side)
    assert storage_side and not any("authorization" in r["headers"] for r in storage_side)


def test_bad_starts(dl, dl_service):
    assert_error(start(dl, "nobody/nothing"), 404, "MODEL_NOT_FOUND")
    failed = assert_success(dl.get("/api/downloads/list", params={"status": "failed", "page_size": 100}))["items"]
    assert any(t["model_id"] == "nobody/nothing" and t["error_code"] == "MODEL_NOT_FOUND" for t in failed)
    assert_error(start(dl, "evil-org/traversal"), 400, "INVALID_FILE_NAME")
    assert not list(dl_service.data_dir.parent.rglob("evil.bin"))
    assert_error(start(dl, "x", source="civitai"), 400, "INVALID_SOURCE")
    # Ids that cannot be a repository or a model name are refused before any task exists.
    listed = assert_success(dl.get("/api/downloads/list", params={"page_size": 100}))["pagination"]["total"]
    for model_id, source in (("../../etc/passwd", "huggingface"), ("/etc/passwd", "huggingface"),
                             ("org/na\x00me", "huggingface"), ("a/b/c", "huggingface"), ("org/na..me", "huggingface"),
                             ("Bad Name!", "ollama"), ("../x:latest", "ollama"), ("mo\x01del:tag", "ollama")):
        assert_error(start(dl, model_id, source=source), 400, "VALIDATION_ERROR")
    assert assert_success(dl.get("/api/downloads/list", params={"page_size": 100}))["pagination"]["total"] == listed
    assert_error(dl.post("/api/downloads/start", json={"source": "huggingface"}), 400, "VALIDATION_ERROR")
    assert_error(dl.get("/api/downloads/task_nope"), 404, "TASK_NOT_FOUND")
    assert_error(dl.put("/api/downloads/task_nope/pause"), 404, "TASK_NOT_FOUND")
    assert_error(dl.delete("/api/downloads/task_nope"), 404, "TASK_NOT_FOUND")
    assert_error(dl.get("/api/downloads/list", params={"status": "sleeping"}), 400, "VALIDATION_ERROR")


def test_downloads_go_through_the_proxy_the_environment_names(start_service):
    from tests.fakes.forward_proxy import ForwardProxy

    proxy = ForwardProxy().start()
    try:
        service = start_service({"HTTP_PROXY": proxy.url, "NO_PROXY": ""})
        with service.client() as client:
            task = assert_success(start(client, "microsoft/DialoGPT-medium"))["task"]
            assert wait_status(client, task["id"], {"completed", "failed"})["status"] == "completed"
            blob = next(service.data_dir.rglob(f"blobs/{DIALOGPT_SHA256}"))
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == DIALOGPT_SHA256
        # The file's bytes came through the proxy, from the storage host the hub redirected to.
        ranged = [r for r in proxy.requests if DIALOGPT_SHA256 in r["url"] and "range" in r["headers"]]
        assert ranged and all(r["url"].startswith("http://localhost:") for r in ranged)
    finally:
        proxy.stop()


def test_a_hub_over_https_is_verified_against_the_trusted_certificates(tmp_path, start_service):
    from tests.fakes.hub import FakeHub
    from tests.fakes.tls import self_signed

    certificate, server_tls = self_signed(tmp_path / "tls")
    hub = FakeHub().start(tls=server_tls)
    weights = hashlib.sha256(b"weights").digest() * 100_000  # 3.2 MB: an LFS file, served from the storage host
    hub.add_repo("test-org/over-tls", files={"model.safetensors": weights, "config.json": b"{}"})
    try:
        trusting = start_service({"HF_ENDPOINT": hub.url, "SSL_CERT_FILE": str(certificate)})
        with trusting.client() as client:
            task = assert_success(start(client, "test-org/over-tls"))["task"]
            assert wait_status(client, task["id"], {"completed", "failed"})["status"] == "completed"
        blob = next(trusting.data_dir.rglob(f"blobs/{hashlib.sha256(weights).hexdigest()}"))
        assert blob.read_bytes() == weights
        assert hub.requests_to("/__storage/")  # the bytes came over TLS from the storage host
        # Without the certificate among the trusted ones, nothing is fetched from that hub.
        refusing = start_service({"HF_ENDPOINT": hub.url, "LLM_MANAGER_DOWNLOAD_BACKOFF_SECONDS": "0.05"})
        with refusing.client() as client:
            task = assert_success(start(client, "test-org/over-tls"))["task"]
            failed = wait_status(client, task["id"], {"completed", "failed"})
        assert failed["status"] == "failed" and failed["error_code"] == "SOURCE_UNAVAILABLE"
        assert "certificate" in failed["error"]
    finally:
        hub.stop()


def test_insufficient_storage_creates_nothing(start_service):
    service = start_service({"LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB": "100000000"})
    with service.client() as client:
        body = assert_error(start(client, "microsoft/DialoGPT-medium"), 507, "INSUFFICIENT_STORAGE")
        assert body["details"]["free_bytes"] < body["details"]["required_bytes"]
        assert assert_success(client.get("/api/downloads/list"))["pagination"]["total"] == 0


def test_unreachable_source_fails_with_source_unavailable(start_service):
    service = start_service({"HF_ENDPOINT": "http://127.0.0.1:9", "LLM_MANAGER_DOWNLOAD_BACKOFF_SECONDS": "0.05"})
    with service.client() as client:
        task = assert_success(start(client, "microsoft/DialoGPT-medium"))["task"]
        failed = wait_status(client, task["id"], {"failed", "completed"})
        assert failed["status"] == "failed" and failed["error_code"] == "SOURCE_UNAVAILABLE"


def test_queue_runs_one_at_a_time_in_fifo_order(start_service, throttled):
    service = start_service({"LLM_MANAGER_MAX_CONCURRENT_DOWNLOADS": "1"})
    with service.client() as client:
        first = assert_success(start(client, "test-org/big-model"))["task"]
        second = assert_success(start(client, "microsoft/DialoGPT-medium"))["task"]
        queue = assert_success(client.get("/api/downloads/queue"))
        assert queue["max_concurrent_downloads"] == 1
        assert [t["id"] for t in queue["active"]] == [first["id"]]
        assert [(t["id"], t["position"]) for t in queue["queued"]] == [(second["id"], 1)]
        assert task_of(client, second["id"])["status"] == "pending"
        assert wait_status(client, second["id"], {"completed"}, timeout=60)
        assert task_of(client, first["id"])["status"] == "completed"
        stored = assert_success(client.get("/api/downloads/storage"))
        assert stored["by_source"]["huggingface"] >= len(world.BIG_WEIGHTS)
        assert stored["disk"]["free_bytes"] > 0 and stored["partial_bytes"] == 0


def test_a_restart_of_the_service_resumes_the_download(start_service, throttled):
    service = start_service({"LLM_MANAGER_DOWNLOAD_PART_THRESHOLD_MB": "1"})
    with service.client() as client:
        task = assert_success(start(client, "test-org/big-model"))["task"]
        wait_for(lambda: task_of(client, task["id"])["downloaded_bytes"] > 2 * 1024 * 1024, 30, what="2 MiB")
    service.stop()
    service.start()
    with service.client() as client:
        done = wait_status(client, task["id"], {"completed", "failed"})
        assert done["status"] == "completed"
    assert throttled.bytes_sent[BIG_SHA256] < len(world.BIG_WEIGHTS) * 1.3


def test_websocket_snapshot_then_live_events(dl, dl_service, throttled):
    from websockets.sync.client import connect

    fresh(dl, "test-org/big-model")
    task = assert_success(start(dl, "test-org/big-model"))["task"]
    url = dl_service.url.replace("http://", "ws://") + f"/ws/downloads?task_id={task['id']}"
    with connect(url, open_timeout=10) as socket:
        snapshot = json.loads(socket.recv(timeout=10))
        assert snapshot["type"] == "snapshot" and [t["id"] for t in snapshot["tasks"]] == [task["id"]]
        events, started = [], time.monotonic()
        while time.monotonic() - started < 60:
            event = json.loads(socket.recv(timeout=10))
            events.append(event)
            if event["task"]["status"] == "completed":
                break
    progress = [e["task"]["downloaded_bytes"] for e in events if e["type"] == "progress"]
    assert len(progress) >= 3 and progress == sorted(progress)
    assert events[-1]["type"] == "status" and events[-1]["task"]["status"] == "completed"
    times = [e["task"]["updated_at"] for e in events]
    assert len(set(times)) >= 3  # at least one event a second while bytes move


def test_websocket_includes_finished_tasks_on_request_and_tells_of_deletions(dl, dl_service):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    fresh(dl, "microsoft/DialoGPT-medium")
    task = assert_success(start(dl, "microsoft/DialoGPT-medium"))["task"]
    assert wait_status(dl, task["id"], {"completed", "failed"})["status"] == "completed"
    base = dl_service.url.replace("http://", "ws://") + "/ws/downloads"
    with connect(base, open_timeout=10) as socket:
        unfinished = json.loads(socket.recv(timeout=10))
        assert unfinished["include"] == "unfinished" and task["id"] not in [t["id"] for t in unfinished["tasks"]]
    with connect(f"{base}?include=all", open_timeout=10) as socket:
        everything = json.loads(socket.recv(timeout=10))
        assert everything["type"] == "snapshot" and everything["include"] == "all"
        assert task["id"] in [t["id"] for t in everything["tasks"]]
        assert_success(dl.delete(f"/api/downloads/{task['id']}"))
        deadline = time.monotonic() + 10
        while True:
            event = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if event["type"] == "deleted":
                break
        assert event == {"type": "deleted", "task_id": task["id"]}
    with connect(f"{base}?include=some", open_timeout=10) as socket:
        refusal = json.loads(socket.recv(timeout=10))
        assert refusal["type"] == "error" and refusal["error"] == "VALIDATION_ERROR"
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
        assert closed.value.rcvd.code == 4400


def test_pull_command_downloads_in_the_foreground(dl_service):
    fresh_env = {**dl_service.env}
    result = subprocess.run(
        [sys.executable, "manage.py", "pull", "TheBloke/TinyLlama-GGUF", "--source", "huggingface",
         "--include", "*Q8_0.gguf"], cwd=REPO_ROOT, env=fresh_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "100.0%" in result.stdout
    blob = Path(dl_service.data_dir) / "models/huggingface/hub/models--TheBloke--TinyLlama-GGUF/blobs" / \
        hashlib.sha256(world.TINY_GGUF_Q8).hexdigest()
    assert blob.read_bytes() == world.TINY_GGUF_Q8


def test_on_a_link_that_caps_each_connection_more_connections_are_opened(start_service, fake_hub):
    """Each connection capped at 4 MiB/s (as a CDN edge caps them): the file starts on two connections and opens
    more, four every half second, while they raise its throughput."""
    data = bytes(range(256)) * (128 * 4096)  # 128 MiB: eight 16 MiB parts
    fake_hub.add_repo("test-org/capped-link", files={"model.safetensors": data, "config.json": b"{}"})
    service = start_service({"LLM_MANAGER_DOWNLOAD_PARTS": "2", "LLM_MANAGER_DOWNLOAD_MAX_PARTS": "8",
                             "LLM_MANAGER_DOWNLOAD_PART_THRESHOLD_MB": "1"})
    fake_hub.bytes_per_second, fake_hub.most_sending = 4 * 1024 * 1024, 0
    try:
        with service.client() as client:
            task = assert_success(start(client, "test-org/capped-link", include=["model.safetensors"]))["task"]
            done = wait_status(client, task["id"], {"completed", "failed"}, timeout=60)
    finally:
        fake_hub.bytes_per_second = None
    assert done["status"] == "completed", done
    assert 6 <= fake_hub.most_sending <= 8  # not the two it started with, nor more than its most
