"""A Ray cluster on this machine for the cluster tests and bench/bench_cluster.py: a head and GPU nodes made with
the service's own `node head` / `node join`, only ever inside a network namespace of its own (in_private_network),
where Ray can bind and reach nothing but 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil

from tests.postgres import PrivatePostgres
from tests.service import MANAGE, REPO_ROOT, free_port

GPU_NODES = ("w1", "w2")


def in_private_network() -> bool:
    """Only loopback here: a namespace of our own, where Ray cannot reach or bind any other address."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


class Cluster:
    """The Ray head (no GPUs) and the GPU nodes, each made with the service's own `node head` / `node join`."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "LLM_MANAGER_DATA_DIR": str(data_dir), "LLM_MANAGER_NODE_IP": "127.0.0.1",
                    "RAY_USAGE_STATS_ENABLED": "0"}

    def node_data_dir(self, name: str) -> Path:
        """Each node's own data dir, as on machines of their own: where it keeps the models it fetches."""
        return self.data_dir / name

    def node(self, name: str, *args: str) -> None:
        subprocess.run([*MANAGE, "node", *args, "--name", name, "--object-store-mb", "80"], cwd=REPO_ROOT,
                       env={**self.env, "LLM_MANAGER_DATA_DIR": str(self.node_data_dir(name))}, check=True,
                       capture_output=True, text=True, timeout=120)

    def start(self) -> "Cluster":
        self.node("head", "head", "--port", str(self.port), "--num-gpus", "0", "--no-dashboard")
        for name in GPU_NODES:
            self.join(name)
        return self

    def join(self, name: str) -> None:
        self.node(name, "join", self.address, "--num-gpus", "2")

    def raylet(self, name: str) -> psutil.Process:
        """The raylet of node `name` (its command line carries the node's resources)."""
        for process in psutil.process_iter(["name", "cmdline"]):
            if "raylet" in (process.info["name"] or "") and any(f"llm_node:{name}" in part
                                                                  for part in process.info["cmdline"] or []):
                return process
        raise LookupError(name)

    def stop(self) -> None:
        ray = shutil.which("ray", path=str(Path(MANAGE[0]).parent))
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)


@contextmanager
def cluster_backing_services() -> Iterator[dict[str, str]]:
    """A PostgreSQL and a Redis of the cluster's own: DATABASE_URL and REDIS_URL."""
    postgres = PrivatePostgres().init()
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield {"DATABASE_URL": postgres.url, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
    finally:
        redis.terminate()
        redis.wait(timeout=10)
        postgres.destroy()
