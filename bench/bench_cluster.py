"""What a Ray cluster adds: start time over a local deployment, and failover time after losing a node.

In one run, on this machine: the tiny GGUF on llama.cpp deployed by a service on its own (SQLite, engines as
local processes) and by a service in cluster mode (its own PostgreSQL and Redis, a Ray head and two nodes of two
logical GPUs), each timed from `POST /api/deployments/start` to the first answered completion. Then the node
holding a cluster deployment loses its raylet (SIGKILL) and the time to the next answered completion, on the other
node, is measured. Targets: the cluster adds ≤ 1 s to a start; failover ≤ 15 s.

Ray only runs inside a network namespace of its own (loopback alone): run as root, the script starts itself again
under `unshare --net`.

    .venv/bin/python bench/bench_cluster.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.engines import TINY_FILE, TINY_REPO, download  # noqa: E402
from tests.fakes.hub import FakeHub  # noqa: E402
from tests.fakes.tiny_gguf import vocab_file, write_tiny_gguf  # noqa: E402
from tests.ray_cluster import Cluster, cluster_backing_services, in_private_network  # noqa: E402
from tests.service import Service  # noqa: E402

PROMPT = {"prompt": "Hello", "max_tokens": 2}


def answered(client: httpx.Client, deployment_id: str) -> bool:
    return client.post(f"/api/completions/{deployment_id}", json=PROMPT).status_code == 200


def until(predicate, timeout: float, interval: float = 0.02) -> float:
    """Seconds until `predicate()` holds (polled every `interval`)."""
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout:
            raise TimeoutError("benchmark step timed out")
        time.sleep(interval)
    return time.perf_counter() - started


def status(client: httpx.Client, deployment_id: str) -> dict:
    return client.get(f"/api/deployments/{deployment_id}").json()["data"]


def start_to_answer(client: httpx.Client, **request) -> tuple[float, str]:
    """Seconds from POST start to the first answered completion, and the deployment's id."""
    started = time.perf_counter()
    answer = client.post("/api/deployments/start", json={"model_id": TINY_REPO, "model_source": "huggingface",
                                                         "max_model_len": 256, **request})
    deployment_id = answer.json()["data"]["deployment_id"]
    until(lambda: status(client, deployment_id)["status"] == "running", 120)
    until(lambda: answered(client, deployment_id), 30)
    return time.perf_counter() - started, deployment_id


def starts(service: Service, rounds: int, **request) -> list[float]:
    times = []
    with service.client(timeout=60) as client:
        for _ in range(rounds):
            seconds, deployment_id = start_to_answer(client, **request)
            times.append(seconds)
            client.delete(f"/api/deployments/{deployment_id}")
    return times


def failover(cluster: Cluster, service: Service) -> tuple[float, float]:
    """(seconds to `error`, seconds to the first answer on another node) after the raylet's SIGKILL."""
    with service.client(timeout=60) as client:
        _, deployment_id = start_to_answer(client, gpu_count=1, node="w1")
        killed = time.perf_counter()
        cluster.raylet("w1").send_signal(signal.SIGKILL)
        until(lambda: status(client, deployment_id)["status"] == "error", 30, 0.05)
        noticed = time.perf_counter() - killed
        until(lambda: status(client, deployment_id)["node"] not in (None, "w1") and answered(client, deployment_id),
              60, 0.05)
        back = time.perf_counter() - killed
        client.delete(f"/api/deployments/{deployment_id}")
    return noticed, back


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not in_private_network():
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            sys.exit("Ray must run in a network namespace of its own: run this as root (it uses unshare --net)")
        vocab_file()  # from PyPI, which the namespace cannot reach: fetched and cached first
        os.execvp("unshare", ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                              sys.executable, *sys.argv])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gguf = write_tiny_gguf(work / TINY_FILE)
        hub = FakeHub().start()
        hub.add_repo(TINY_REPO, files={TINY_FILE: gguf.read_bytes()}, library_name="gguf")
        env = {"HF_ENDPOINT": hub.url, "LLM_MANAGER_LOG_LEVEL": "WARNING", "LLM_MANAGER_ENGINE_PORTS": "18300-18399",
               "LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB": "0.01", "LLM_MANAGER_ENGINE_STOP_GRACE": "2"}
        cluster = Cluster(work / "ray").start()
        try:
            with cluster_backing_services() as backing:
                local = Service(work / "local", env=env).start()
                clustered = Service(work / "cluster", env={
                    **env, **backing, "LLM_MANAGER_RAY_ADDRESS": cluster.address, "LLM_MANAGER_NODE_IP": "127.0.0.1",
                    "LLM_MANAGER_SHARED_STORAGE": "true"}).start(timeout=180)
                try:
                    for service in (local, clustered):
                        with service.client(timeout=60) as client:
                            download(client, TINY_REPO)
                    local_times = starts(local, args.rounds)
                    cluster_times = starts(clustered, args.rounds, gpu_count=1)
                    noticed, back = failover(cluster, clustered)
                finally:
                    clustered.stop()
                    local.stop()
        finally:
            cluster.stop()
            hub.stop()
    local_median, cluster_median = statistics.median(local_times), statistics.median(cluster_times)
    print(f"start to first answer, median of {args.rounds}: local {local_median:.2f} s, cluster "
          f"{cluster_median:.2f} s ({cluster_median / local_median:.2f}×); the cluster adds "
          f"{cluster_median - local_median:+.2f} s (target ≤ 1 s)")
    print(f"  local {[round(t, 2) for t in local_times]}, cluster {[round(t, 2) for t in cluster_times]}")
    print(f"node loss (raylet SIGKILL): deployment `error` after {noticed:.1f} s, answering on another node after "
          f"{back:.1f} s (target ≤ 15 s)")


if __name__ == "__main__":
    main()
