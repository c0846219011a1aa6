"""Deployment overhead: POST start → `running`, against the engine alone started by hand; crash detection time.

Same model (a tiny random GGUF) and the same llama.cpp engine in one run: the engine
started by hand is timed from its start until its first probe answers; through the
service, from `POST /api/deployments/start` until `GET` says `running`. Then the engine
is SIGKILLed and the time until the service reports `error` is measured.
Targets: overhead < 0.5 s, crash → `error` < 2 s.

    .venv/bin/python bench/bench_deploy.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from engine_setup import TINY_REPO, start, wait


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def engine_by_hand(gguf: Path) -> float:
    port = free_port()
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "tiny",
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "256", "--n_gpu_layers", "0"]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def ready():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait(ready)
        return time.perf_counter() - started
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hub, service, gguf = start(Path(tmp))
        by_hand, through_service, detection = [], [], []
        try:
            with service.client() as client:
                for _ in range(args.rounds):
                    by_hand.append(engine_by_hand(gguf))
                    started = time.perf_counter()
                    deployment = client.post("/api/deployments/start", json={
                        "model_id": TINY_REPO, "model_source": "huggingface", "max_model_len": 256,
                        "restart_policy": "never"}).json()["data"]
                    url = f"/api/deployments/{deployment['deployment_id']}"
                    running = wait(lambda: (d := client.get(url).json()["data"])["status"] == "running" and d)
                    through_service.append(time.perf_counter() - started)
                    killed = time.perf_counter()
                    os.killpg(running["pid"], signal.SIGKILL)
                    wait(lambda: client.get(url).json()["data"]["status"] == "error")
                    detection.append(time.perf_counter() - killed)
                    client.delete(url)
        finally:
            service.stop()
            hub.stop()
    hand, ours, crash = (statistics.median(x) for x in (by_hand, through_service, detection))
    print(f"rounds: {args.rounds} (medians)")
    print(f"engine started by hand, to first probe:   {hand * 1000:8.0f} ms")
    print(f"POST /api/deployments/start to running:   {ours * 1000:8.0f} ms")
    print(f"overhead: {(ours - hand) * 1000:.0f} ms = {ours / hand:.2f}x the engine alone (target < 500 ms)")
    print(f"crash (SIGKILL) to status error: {crash * 1000:.0f} ms (target < 2000 ms)")


if __name__ == "__main__":
    main()
