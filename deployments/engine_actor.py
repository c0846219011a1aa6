"""The Ray actor that owns one deployment's engine on the node Ray placed it on (deployments.cluster makes it).

It imports nothing of Django: it runs in a Ray worker on any node, which has the project installed but needs no
settings or database. The engine is its child and dies with it (PR_SET_PDEATHSIG): a node that is lost takes its
engines along instead of leaving them holding GPUs and ports no one knows of.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from core.logfiles import tail_lines

if TYPE_CHECKING:
    from downloads.transfer import TransferSettings

# The engine's first step, before it becomes the engine (exec): SIGKILL when its parent, this actor's process, ends
# (PR_SET_PDEATHSIG survives exec; a preexec_fn could deadlock the fork of a process with Ray's threads).
DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(1)  # the parent ended before that\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def node_models_dir() -> Path:
    """This node's model cache: its data dir's models/ (`node join` gives the node's workers its data dir)."""
    return Path(os.environ.get("LLM_MANAGER_DATA_DIR") or Path.cwd()) / "models"


class EngineActor:
    def __init__(self, deployment_id: str):
        self.deployment_id = deployment_id
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        # Until it starts an engine (or its fetch fails) it is preparing: placed, maybe fetching the model; its
        # deployment is `starting` and alive, never "exited" before it began.
        self.preparing = True
        self.fetched = {"done": 0, "received": 0, "complete": False}
        # One fetch at a time: a service that restarted mid-fetch asks again (deployments.cluster.RayHost.adopt_start)
        # while the first, whose caller is gone, may still run.
        self.fetch_lock = threading.Lock()

    def where(self) -> dict:
        """The node it runs on, the GPUs Ray gave it (as CUDA_VISIBLE_DEVICES numbers them), its model cache."""
        import ray

        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "ip": ray.util.get_node_ip_address(),
                "gpu_ids": [int(gpu) for gpu in ray.get_gpu_ids()], "models_dir": str(node_models_dir())}

    def fetch(self, items: list[dict], transfer: dict, by_size: bool) -> int:
        """Put a model into this node's cache, laid out as on the service's own disk: each `remote` file fetched
        with the service's downloader (parallel ranges, resumable from its partial file and checkpoint after a
        crash of this node, verified, renamed into place), then the source's `link`s and small `file`s. Files
        already there are kept (checked `by_size` when the node fetched them before, else by digest). The bytes
        received. Asked again, it waits for a fetch still running and answers what this actor fetched."""
        from downloads.transfer import TransferSettings

        with self.fetch_lock:
            if self.fetched["complete"]:
                return self.fetched["received"]
            return self._fetch(items, TransferSettings(**transfer), by_size)

    def _fetch(self, items: list[dict], settings: TransferSettings, by_size: bool) -> int:
        from core.paths import inside, safe_relative_path
        from downloads.transfer import fetch_into_place, verified

        root = node_models_dir()
        self.fetched = {"done": 0, "received": 0, "complete": False}
        try:
            for item in items:
                target = inside(root, root / safe_relative_path(item["path"]))
                target.parent.mkdir(parents=True, exist_ok=True)
                if item["kind"] == "link":
                    if target.is_symlink() or target.exists():
                        target.unlink()
                    target.symlink_to(item["target"])
                elif item["kind"] == "file":
                    target.write_bytes(item["data"])
                elif target.exists() and (target.stat().st_size == item["size"] if by_size else verified(
                        target, item["expected"], item["algorithm"], item["size"])):
                    self.fetched["done"] += item["size"]
                else:
                    before = self.fetched["done"]

                    def tick(running, last: bool, before: int = before) -> None:
                        self.fetched["done"] = before + sum(part[2] for part in running.parts)
                        self.fetched["received"] += running.take_received()

                    fetch_into_place(url=item["url"], size=item["size"], destination=target,
                                     expected=item["expected"], algorithm=item["algorithm"], settings=settings,
                                     auth=item.get("auth"), parts=[], tick=tick, started_over=lambda: None)
                    self.fetched["done"] = before + item["size"]
            self.fetched["complete"] = True
            return self.fetched["received"]  # still preparing until start(): no moment without an engine or a fetch
        except BaseException:
            self.preparing = False
            raise

    def progress(self) -> dict:
        return dict(self.fetched)

    def start(self, argv: list[str], env: dict[str, str], cwd: str, log_path: str) -> dict:
        """Start the engine, its output appended to `log_path`; its pid. Asked again while it runs (by a service
        that restarted before it recorded the pid), the running engine's pid."""
        if self.process is not None and self.process.poll() is None:
            return {"pid": self.process.pid}
        self.preparing = False
        Path(cwd).mkdir(parents=True, exist_ok=True)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting on {socket.gethostname()}: "
                      f"{' '.join(argv)}\n".encode())
            log.flush()
            # CUDA_VISIBLE_DEVICES is Ray's: this actor's own environment carries the GPUs it was given.
            self.process = subprocess.Popen([sys.executable, "-c", DIE_WITH_PARENT, str(os.getpid()), *argv],
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env={**os.environ, **env}, cwd=cwd)
        return {"pid": self.process.pid}

    def alive(self) -> bool:
        """Its engine runs, or it is still preparing to start it (fetching the model the engine needs)."""
        return self.preparing or (self.process is not None and self.process.poll() is None)

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
    disk; and the one that hands out the node's ports to engines."""

    def __init__(self):
        self.handed: dict[int, float] = {}  # port → when it was handed out

    def reserve_port(self, host: str, low: int, high: int, taken: list[int], hold_seconds: float,
                     wanted: int | None = None) -> int | None:
        """A port free on this node (`wanted` if it is), skipping those the database gives to engines and those
        handed out in the last `hold_seconds` (an engine binds its port only once loaded: until then the port
        looks free, and two engines starting at once on one node must not be given the same)."""
        now = time.monotonic()
        self.handed = {port: at for port, at in self.handed.items() if now - at < hold_seconds}
        candidates = [wanted] if wanted is not None else range(low, high + 1)
        port = next((port for port in candidates if port not in taken and port not in self.handed
                     and port_free(port, host)), None)
        if port is not None:
            self.handed[port] = now
        return port

    def stats(self, models_dir: str) -> dict:
        from core.gpus import gpu_stats

        disk = shutil.disk_usage(models_dir if os.path.isdir(models_dir) else "/")
        return {"gpus": gpu_stats(), "disk_free_bytes": disk.free, "disk_total_bytes": disk.total}
