"""The Ray actor that owns one deployment's engine on the node Ray placed it on (deployments.cluster makes it).

It imports nothing of Django: it runs in a Ray worker on any node, which has the project installed but needs no
settings or database. The engine is its child and dies with it (PR_SET_PDEATHSIG): a node that is lost takes its
engines along instead of leaving them holding GPUs and ports no one knows of.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from core.logfiles import tail_lines

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


class EngineActor:
    def __init__(self, deployment_id: str):
        self.deployment_id = deployment_id
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def where(self) -> dict:
        """The node it runs on, and the GPUs Ray gave it (as CUDA_VISIBLE_DEVICES numbers them)."""
        import ray

        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "ip": ray.util.get_node_ip_address(),
                "gpu_ids": [int(gpu) for gpu in ray.get_gpu_ids()]}

    def reserve_port(self, host: str, low: int, high: int, taken: list[int], wanted: int | None = None) -> int | None:
        """A port free on this node (`wanted` if it is), skipping those the database gives to other engines."""
        if wanted is not None:
            return wanted if _port_free(host, wanted) else None
        return next((port for port in range(low, high + 1) if port not in taken and _port_free(host, port)), None)

    def start(self, argv: list[str], env: dict[str, str], cwd: str, log_path: str) -> dict:
        """Start the engine, its output appended to `log_path`; its pid and start time."""
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting on {socket.gethostname()}: "
                      f"{' '.join(argv)}\n".encode())
            log.flush()
            # CUDA_VISIBLE_DEVICES is Ray's: this actor's own environment carries the GPUs it was given.
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env={**os.environ, **env}, cwd=cwd, preexec_fn=_die_with_parent)
        return {"pid": self.process.pid}

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_status(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if not self.alive():
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def tail(self, lines: int) -> list[str]:
        return tail_lines(self.log_path, lines) if self.log_path else []


class NodeAgent:
    """One per node (named `node-NAME`): what the node has that Ray does not say, its GPUs' memory (NVML) and its
    disk."""

    def stats(self, models_dir: str) -> dict:
        from core.gpus import gpu_stats

        disk = shutil.disk_usage(models_dir if os.path.isdir(models_dir) else "/")
        return {"gpus": gpu_stats(), "disk_free_bytes": disk.free, "disk_total_bytes": disk.total}
