"""The service on a Ray cluster (a head and two nodes of two logical GPUs, tests/cluster/conftest.py): placement
across nodes, a named node, no room, node loss and failover, a restarted service adopting the engines, draining a
node under load, and the inputs it refuses."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import httpx

from tests.cluster.conftest import wait_until
from tests.engines import deploy, wait_deployment
from tests.envelope import assert_error, assert_success
from tests.service import MANAGE, REPO_ROOT, Service

PROMPT = {"prompt": "Hello", "max_tokens": 2}


def answers(client: httpx.Client, deployment_id: str) -> bool:
    response = client.post(f"/api/completions/{deployment_id}", json=PROMPT)
    return response.status_code == 200 and bool(response.json()["data"]["choices"])


def running(client, **request) -> dict:
    started = assert_success(deploy(client, **request))
    shown = wait_deployment(client, started["deployment_id"], {"running", "error"}, timeout=90)
    assert shown["status"] == "running", shown
    return shown


def stop_all(client) -> None:
    for deployment in assert_success(client.get("/api/deployments/list"))["items"]:
        client.delete(f"/api/deployments/{deployment['deployment_id']}")


def test_nodes_are_listed_with_their_gpus(cluster_service):
    with cluster_service.client() as client:
        nodes = {node["id"]: node for node in assert_success(client.get("/api/nodes"))["nodes"]}
        assert set(nodes) == {"head", "w1", "w2"}
        assert all(node["alive"] and not node["draining"] and node["address"] == "127.0.0.1"
                   for node in nodes.values())
        assert nodes["head"]["head"] and nodes["head"]["gpus"]["total"] == 0
        assert nodes["w1"]["gpus"]["total"] == nodes["w2"]["gpus"]["total"] == 2
        # Each node's agent reports its disk, and its GPUs as NVML sees them (none on this machine: Ray's are
        # logical, so placement counts them alone).
        assert all(node["disk_free_bytes"] > 0 and node["gpus"]["devices"] == [] for node in nodes.values())
        assert assert_success(client.get(f"/api/nodes/{nodes['w1']['ray_node_id']}"))["id"] == "w1"
        assert_error(client.get("/api/nodes/w9"), 404, "NODE_NOT_FOUND")
        listed = cluster_service.manage("node", "list", check=True).stdout
        assert "w1\t127.0.0.1\talive" in listed and "GPUs 0/2" in listed
    # The console's Nodes page lists them, and its Drain and Undrain buttons call the services.
    with cluster_service.console_client("ops", "ops-password-1") as console:
        page = console.get("/admin/nodes/")
        assert page.status_code == 200 and all(f'data-node="{name}"' in page.text for name in ("head", "w1", "w2"))
        token = console.cookies["csrftoken"]
        for action, draining in (("drain", True), ("undrain", False)):
            done = console.post(f"/admin/nodes/w1/{action}", data={"csrfmiddlewaretoken": token})
            assert done.status_code == 302
            with cluster_service.client() as client:
                assert assert_success(client.get("/api/nodes/w1"))["draining"] is draining


def test_placement_by_free_gpus_a_named_node_and_no_room(cluster_service):
    with cluster_service.client(timeout=60) as client:
        try:
            one = running(client, name="one", gpu_count=1)
            assert one["node"] == "w1" and len(one["gpu_ids"]) == 1  # both free: by name
            # Tensor parallel over two GPUs of one node: the node with two free.
            pair = running(client, name="pair", gpu_count=2)
            assert pair["node"] == "w2" and sorted(pair["gpu_ids"]) == [0, 1]
            assert_error(deploy(client, name="none", gpu_count=2), 409, "INSUFFICIENT_GPU_MEMORY")
            named = running(client, name="named", gpu_count=1, node="w1")
            assert named["node"] == "w1" and named["gpu_ids"] != one["gpu_ids"]
            # A CPU engine on a named node with no GPUs.
            cpu = running(client, name="cpu", gpu_count=0, node="head")
            assert cpu["node"] == "head" and cpu["gpu_ids"] == []
            for shown in (one, pair, named, cpu):
                assert answers(client, shown["deployment_id"]), shown
                logs = assert_success(client.get(f"/api/deployments/{shown['deployment_id']}/logs"))
                assert logs["count"] > 0
                health = assert_success(client.get(f"/api/deployments/{shown['deployment_id']}/health"))
                assert health["healthy"], health
            # The engine saw exactly the GPUs Ray gave it.
            assert "CUDA_VISIBLE_DEVICES" not in str(pair["command"])
            w2 = assert_success(client.get("/api/nodes/w2"))
            assert w2["gpus"]["held"] == 2 and w2["gpus"]["by_deployment"] == {pair["deployment_id"]: pair["gpu_ids"]}
            # Bad input: an unknown node, GPU ids (Ray assigns them), a draining node.
            assert_error(deploy(client, node="w9"), 400, "VALIDATION_ERROR")
            assert_error(deploy(client, gpu_ids=[7]), 400, "VALIDATION_ERROR")
            assert_success(client.put("/api/nodes/head/drain"))
            assert_error(deploy(client, node="head", gpu_count=0), 409, "NODE_DRAINING")
            assert_success(client.put("/api/nodes/head/undrain"))
        finally:
            stop_all(client)
        assert wait_until(lambda: assert_success(client.get("/api/nodes/w2"))["gpus"]["held"] == 0, 10,
                          "w2's GPUs freed")


def test_a_lost_node_fails_its_deployments_which_answer_again_on_another(cluster, cluster_service):
    with cluster_service.client(timeout=60) as client:
        try:
            shown = running(client, name="survivor", gpu_count=1, node="w1")
            deployment_id = shown["deployment_id"]
            assert answers(client, deployment_id)
            killed = time.monotonic()
            cluster.raylet("w1").send_signal(signal.SIGKILL)
            errored, _ = wait_until(lambda: (d := assert_success(client.get(f"/api/deployments/{deployment_id}")))[
                "status"] == "error" and d, 10, "the deployment to fail")
            assert "node w1 lost" in errored["error"], errored
            lost = time.monotonic() - killed
            back, _ = wait_until(lambda: (d := assert_success(client.get(f"/api/deployments/{deployment_id}")))[
                "status"] == "running" and d, 60, "the deployment to run again")
            assert back["node"] == "w2" and back["restart_count"] == 1, back
            assert answers(client, deployment_id)
            print(f"node loss noticed after {lost:.1f} s; answering again after {time.monotonic() - killed:.1f} s")
            w1 = next(node for node in assert_success(client.get("/api/nodes"))["nodes"] if node["id"] == "w1")
            assert not w1["alive"]
        finally:
            stop_all(client)
            cluster.join("w1")


def test_a_restarted_service_adopts_the_running_engines(cluster_env, tmp_path, cluster_service):
    # A second service over the same database and cluster, after the first is gone: the actors are found by name.
    with cluster_service.client(timeout=60) as client:
        shown = running(client, name="adopted", gpu_count=1)
    cluster_service.stop()
    try:
        again = Service(cluster_service.data_dir, env=cluster_env).start(timeout=180)
        with again.client(timeout=60) as client:
            time.sleep(3)  # several caretaker rounds
            now = assert_success(client.get(f"/api/deployments/{shown['deployment_id']}"))
            assert now["status"] == "running" and now["pid"] == shown["pid"] and now["restart_count"] == 0, now
            assert answers(client, shown["deployment_id"])
            stop_all(client)
        again.stop()
    finally:
        cluster_service.start(timeout=180)


def test_draining_a_node_moves_its_deployment_without_a_failed_request(cluster_service):
    with cluster_service.client(timeout=60) as client:
        try:
            shown = running(client, name="mover", gpu_count=1, node="w2")
            deployment_id = shown["deployment_id"]
            outcomes: list[int] = []
            done = threading.Event()

            def keep_calling():
                with cluster_service.client(timeout=30) as caller:
                    deadline = time.monotonic() + 90
                    while not done.is_set() and time.monotonic() < deadline and len(outcomes) < 2000:
                        outcomes.append(caller.post(f"/api/completions/{deployment_id}", json=PROMPT).status_code)

            calling = threading.Thread(target=keep_calling)
            calling.start()
            time.sleep(1)
            drained = assert_success(client.put("/api/nodes/w2/drain"))
            assert drained["draining"]
            moved, took = wait_until(lambda: (d := assert_success(client.get(f"/api/deployments/{deployment_id}")))[
                "node"] != "w2" and d, 60, "the deployment to move")
            time.sleep(2)  # calls on the new node
            done.set()
            calling.join()
            assert moved["status"] == "running" and moved["node"] == "w1", moved
            assert outcomes and set(outcomes) == {200}, [code for code in outcomes if code != 200][:5]
            assert answers(client, deployment_id)
            assert assert_success(client.get("/api/nodes/w2"))["gpus"]["held"] == 0
            print(f"moved in {took:.1f} s under {len(outcomes)} calls, none failed")
            assert_error(deploy(client, node="w2"), 409, "NODE_DRAINING")
            assert not assert_success(client.put("/api/nodes/w2/undrain"))["draining"]
        finally:
            stop_all(client)


def test_cluster_mode_without_postgresql_and_redis_says_what_is_missing(tmp_path):
    result = subprocess.run([*MANAGE, "check"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "LLM_MANAGER_DATA_DIR": str(tmp_path),
                                 "LLM_MANAGER_RAY_ADDRESS": "127.0.0.1:6379"})
    assert result.returncode == 2, result
    message = result.stderr.strip()
    assert message.startswith("llm-manager: LLM_MANAGER_RAY_ADDRESS: cluster mode needs PostgreSQL") and "Redis" in message \
        and "Traceback" not in message, message
