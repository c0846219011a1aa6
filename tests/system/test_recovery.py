"""Recovery that does not depend on the launcher: the service run the usual Django way, as separate `migrate`,
`qcluster` and `daphne` processes (as systemd units or containers run it), with the worker cluster killed,
stopped and doubled under a running download and a running engine."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time

import psutil
import pytest

from tests import world
from tests.downloads.conftest import BIG_SHA256
from tests.engines import deploy, download, wait_deployment
from tests.envelope import assert_success
from tests.service import SplitService, wait_for


@pytest.fixture
def split_service(tmp_path, sources_env):
    started = []

    def start(env: dict | None = None) -> SplitService:
        service = SplitService(tmp_path / f"split{len(started)}", {**sources_env, **(env or {})}).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def _stop_within(process: subprocess.Popen, seconds: float) -> float:
    """SIGTERM; the seconds it took to exit with status 0, its whole process tree gone (engines, in sessions of
    their own, run on)."""
    session = os.getsid(process.pid)
    tree = [child for child in psutil.Process(process.pid).children(recursive=True) if os.getsid(child.pid) == session]
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=seconds) == 0
    took = time.monotonic() - started
    _, alive = psutil.wait_procs(tree, timeout=2)
    assert not alive, [p.cmdline() for p in alive]
    return took


def test_downloads_survive_a_stopped_and_a_killed_worker_cluster(split_service, throttled):
    service = split_service({"LLM_MANAGER_DOWNLOAD_PART_THRESHOLD_MB": "1", "LLM_MANAGER_DOWNLOAD_STALE_SECONDS": "3",
                             "LLM_MANAGER_DOWNLOAD_BACKOFF_SECONDS": "0.2",
                             "LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB": "0.01"})
    blob = service.data_dir / "models/huggingface/hub/models--test-org--big-model/blobs" / BIG_SHA256
    with service.client() as client:
        def task_now(task_id: str) -> dict:
            return assert_success(client.get(f"/api/downloads/{task_id}"))

        task = assert_success(client.post("/api/downloads/start", json={"model_id": "test-org/big-model",
                                                                       "source": "huggingface"}))["task"]
        wait_for(lambda: task_now(task["id"])["downloaded_bytes"] > 2 * 1024 * 1024, 30, what="2 MiB")
        # SIGTERM: the download saves its progress and is queued again; the cluster is gone in seconds.
        assert _stop_within(service.clusters[-1], 10) < 10
        stopped = task_now(task["id"])
        assert stopped["status"] == "pending" and stopped["downloaded_bytes"] > 2 * 1024 * 1024
        service.start_cluster()
        done = wait_for(lambda: (t := task_now(task["id"]))["status"] in ("completed", "failed") and t, 60,
                        what="the download after a new cluster")
        assert done["status"] == "completed", done
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == BIG_SHA256
        # Resumed, not restarted: about one part at most fetched twice.
        assert throttled.bytes_sent[BIG_SHA256] <= len(world.BIG_WEIGHTS) * 5 // 4

        # SIGKILL of the whole cluster mid-file: a new cluster (as systemd would start) finds the task stale.
        assert_success(client.delete(f"/api/downloads/{task['id']}", params={"delete_files": "true"}))
        throttled.bytes_sent.clear()
        task = assert_success(client.post("/api/downloads/start", json={"model_id": "test-org/big-model",
                                                                       "source": "huggingface"}))["task"]
        wait_for(lambda: task_now(task["id"])["downloaded_bytes"] > 2 * 1024 * 1024, 30, what="2 MiB")
        service.kill(service.clusters[-1])
        assert task_now(task["id"])["status"] == "downloading"  # nobody has noticed yet
        service.start_cluster()
        done = wait_for(lambda: (t := task_now(task["id"]))["status"] in ("completed", "failed") and t, 90,
                        what="the download after a killed cluster")
        assert done["status"] == "completed", done
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == BIG_SHA256
        assert throttled.bytes_sent[BIG_SHA256] <= len(world.BIG_WEIGHTS) * 5 // 4
    assert _stop_within(service.webs[-1], 10) < 10


def test_a_crashed_engine_is_restarted_once_by_two_clusters_and_outlives_their_stop(split_service, engine_env,
                                                                                     tiny_gguf):
    service = split_service(engine_env)
    second = service.start_cluster()  # two clusters: the engine must be restarted once, not twice
    with service.client() as client:
        download(client, "test-org/tiny-llama-GGUF")
        started = assert_success(deploy(client))
        running = wait_deployment(client, started["deployment_id"], {"running", "error"})
        assert running["status"] == "running", running
        psutil.Process(running["pid"]).kill()
        wait_for(lambda: assert_success(client.get(f"/api/deployments/{started['deployment_id']}"))["restart_count"]
                 >= 1, 30, what="the restart")
        again = wait_deployment(client, started["deployment_id"], {"running"})
        assert again["pid"] != running["pid"] and again["restart_count"] == 1
        time.sleep(3)  # a second restart would show by now
        settled = assert_success(client.get(f"/api/deployments/{started['deployment_id']}"))
        assert settled["restart_count"] == 1 and settled["pid"] == again["pid"]
        engines = [p for p in psutil.process_iter(["cmdline"]) if "llama_cpp.server" in " ".join(p.info["cmdline"] or [])
                   and f"--port {again['port']}" in " ".join(p.info["cmdline"] or "")]
        assert len(engines) == 1
        # Both clusters stop within the bound; the engine runs on, to be adopted by the next start.
        for cluster in (service.clusters[0], second):
            assert _stop_within(cluster, 10) < 10
        assert psutil.pid_exists(again["pid"])
        service.start_cluster()
        time.sleep(2)
        adopted = assert_success(client.get(f"/api/deployments/{started['deployment_id']}"))
        assert adopted["status"] == "running" and adopted["pid"] == again["pid"]
        assert_success(client.delete(f"/api/deployments/{started['deployment_id']}"))
