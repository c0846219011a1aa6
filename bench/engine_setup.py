"""Shared by the engine benchmarks: a fake hub holding the tiny GGUF, and a service that has downloaded it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.engines import TINY_FILE, TINY_REPO, download  # noqa: E402
from tests.fakes.hub import FakeHub  # noqa: E402
from tests.fakes.tiny_gguf import write_tiny_gguf  # noqa: E402
from tests.service import Service  # noqa: E402


def start(work_dir: Path) -> tuple[FakeHub, Service, Path]:
    """(hub, service, path of the GGUF as the service stored it), the model downloaded and ready to deploy."""
    gguf = write_tiny_gguf(work_dir / TINY_FILE)
    hub = FakeHub().start()
    hub.add_repo(TINY_REPO, files={TINY_FILE: gguf.read_bytes()}, library_name="gguf")
    service = Service(work_dir / "service", env={
        "HF_ENDPOINT": hub.url, "LLM_MANAGER_LOG_LEVEL": "WARNING", "LLM_MANAGER_ENGINE_PORTS": "18300-18399",
        "LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB": "0.01"}).start()
    with service.client() as client:
        download(client, TINY_REPO)
    stored = next((work_dir / "service" / "models" / "huggingface" / "hub").rglob(f"snapshots/*/{TINY_FILE}"))
    return hub, service, stored


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def engine_by_hand(gguf: Path, context: int) -> Iterator[tuple[int, float]]:
    """llama.cpp started by hand on `gguf`, the argv the service would give it: (its port, when it was started),
    once its probe answers (polled every 5 ms); killed on leaving."""
    port = free_port()
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "tiny",
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(context), "--n_gpu_layers", "0"]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def ready():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait(ready)
        yield port, started
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait(predicate, timeout: float = 60, interval: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark step timed out")
