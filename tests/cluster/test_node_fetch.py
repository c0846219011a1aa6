"""Without shared storage a node fetches a deployment's model into its own cache, with the service's downloader,
shown as a download task of the node (in the API and the live view), followed again by a restarted service,
resumed after the node's own crash; Hugging Face's layout and Ollama's."""

from __future__ import annotations

import json
import signal

import psycopg
from websockets.sync.client import connect

from tests.cluster.conftest import wait_until
from tests.engines import TINY_FILE, TINY_REPO, deploy, download
from tests.envelope import assert_error, assert_success
from tests.service import Service


def node_task(client, node: str = "w1") -> dict | None:
    tasks = assert_success(client.get("/api/downloads/list", params={"page_size": 100}))["items"]
    return next((task for task in tasks if task["node"] == node), None)


def deployment(client, deployment_id: str) -> dict:
    return assert_success(client.get(f"/api/deployments/{deployment_id}"))


def test_a_node_fetches_the_model_into_its_own_cache_and_resumes_after_its_crash(
        cluster, cluster_backing, engine_env, fake_hub, need_registry, tiny_gguf, tmp_path):
    # A service of its own (its own database, the same cluster), whose nodes share no storage with it.
    base, _ = cluster_backing["DATABASE_URL"].rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute("CREATE DATABASE node_fetch")
    service = Service(tmp_path / "service", env={
        **engine_env, "DATABASE_URL": f"{base}/node_fetch", "REDIS_URL": cluster_backing["REDIS_URL"][:-1] + "1",
        "LLM_MANAGER_RAY_ADDRESS": cluster.address, "LLM_MANAGER_NODE_IP": "127.0.0.1",
        "LLM_MANAGER_ENGINE_STOP_GRACE": "2"}).start(timeout=180)
    size = tiny_gguf.stat().st_size
    client = service.client(timeout=60)
    try:
        total = download(client, TINY_REPO)["total_bytes"]  # the GGUF and a README
        assert_success(client.put("/api/nodes/w2/drain"))  # in this service's view: w1 is the GPU node left
        fake_hub.bytes_per_second = 192 * 1024  # the node's fetch takes about 45 s
        fake_hub.bytes_sent.clear()
        started = assert_success(deploy(client, name="fetched", gpu_count=1, restart_policy="always"))
        deployment_id = started["deployment_id"]
        fetching, _ = wait_until(lambda: (task := node_task(client)) and task["downloaded_bytes"] > size // 4
                                 and task, 30, "the node's fetch to be a quarter through")
        assert fetching["status"] == "downloading" and fetching["total_bytes"] == total
        assert fetching["storage_path"].startswith(str(cluster.node_data_dir("w1")))
        assert (shown := deployment(client, deployment_id))["status"] == "starting", shown["error"]
        assert_error(client.put(f"/api/downloads/{fetching['id']}/pause"), 400, "INVALID_ACTION")
        with connect(f"ws://127.0.0.1:{service.port}/ws/downloads") as live:
            snapshot = json.loads(live.recv(timeout=10))
        assert [task["node"] for task in snapshot["tasks"] if task["id"] == fetching["id"]] == ["w1"]

        # The service restarts meanwhile: the node goes on fetching, and the restarted service follows the
        # fetch again (its progress moves on) and will start the engine when it is done.
        client.close()
        service.stop()
        service.start(timeout=180)
        client = service.client(timeout=60)
        before = node_task(client)["downloaded_bytes"]
        wait_until(lambda: node_task(client)["downloaded_bytes"] > before, 30,
                   "the restarted service to follow the node's fetch")
        assert (shown := deployment(client, deployment_id))["status"] == "starting", shown["error"]

        cluster.raylet("w1").send_signal(signal.SIGKILL)
        failed, _ = wait_until(lambda: (d := deployment(client, deployment_id))["status"] == "error" and d, 10,
                               "the deployment to fail with its node")
        assert "node w1 lost" in failed["error"], failed
        lost, _ = wait_until(lambda: (task := node_task(client))["status"] == "failed" and task, 10,
                             "the node's fetch to be marked lost")
        assert lost["error_code"] == "NODE_LOST" and 0 < lost["downloaded_bytes"] < total
        cluster.join("w1")  # the same machine back, with its disk: the fetch goes on where it was
        running, _ = wait_until(lambda: (d := deployment(client, deployment_id))["status"] == "running" and d,
                                120, "the deployment to run on w1 again")
        assert running["node"] == "w1" and str(cluster.node_data_dir("w1")) in " ".join(running["command"])
        done = node_task(client)
        assert done["status"] == "completed" and done["downloaded_bytes"] == total
        # Resumed, not fetched again: the hub sent the file's bytes about once in all.
        sent = sum(fake_hub.bytes_sent.values())
        assert size <= sent < 1.5 * size, (sent, size)
        cached = list((cluster.node_data_dir("w1") / "models").rglob(TINY_FILE))
        assert cached and cached[0].stat().st_size == size
        answer = client.post(f"/api/completions/{deployment_id}", json={"prompt": "Hello", "max_tokens": 2})
        assert answer.status_code == 200, answer.text
        # Drained, w1's deployment moves to w2, which fetches the model into its own cache before it answers.
        fake_hub.bytes_per_second = None
        assert_success(client.put("/api/nodes/w2/undrain"))
        assert_success(client.put("/api/nodes/w1/drain"))
        moved, _ = wait_until(lambda: (d := deployment(client, deployment_id))["node"] == "w2" and d, 90,
                              "the deployment to move to w2")
        assert moved["status"] == "running" and str(cluster.node_data_dir("w2")) in " ".join(moved["command"])
        assert node_task(client, "w2")["status"] == "completed"
        assert list((cluster.node_data_dir("w2") / "models").rglob(TINY_FILE))
        answer = client.post(f"/api/completions/{deployment_id}", json={"prompt": "Hello", "max_tokens": 2})
        assert answer.status_code == 200, answer.text
        client.delete(f"/api/deployments/{deployment_id}")
        assert_success(client.put("/api/nodes/w1/undrain"))

        # An Ollama model reaches a node the same way: its layers from the registry, its manifest as the service
        # has it (the engine reads the model layer by its blob path on the node).
        need_registry.push_ollama_model("node-gguf", "latest", [("model", tiny_gguf.read_bytes()),
                                                                ("template", b"{{ .Prompt }}")],
                                        {"model_format": "gguf", "model_family": "llama", "file_type": "F32"})
        download(client, "node-gguf:latest", source="ollama")
        layered = assert_success(deploy(client, model_id="node-gguf:latest", source="ollama", name="layered",
                                        gpu_count=1))["deployment_id"]
        running, _ = wait_until(lambda: (d := deployment(client, layered))["status"] in ("running", "error") and d,
                                90, "the Ollama model to run on its node")
        assert running["status"] == "running", running["error"]
        node_models = cluster.node_data_dir(running["node"]) / "models"
        assert str(node_models) in " ".join(running["command"])
        assert list(node_models.rglob("manifests/**/node-gguf/latest"))
        answer = client.post(f"/api/completions/{layered}", json={"prompt": "Hello", "max_tokens": 2})
        assert answer.status_code == 200, answer.text
        client.delete(f"/api/deployments/{layered}")
    finally:
        client.close()
        fake_hub.bytes_per_second = None
        service.stop()
