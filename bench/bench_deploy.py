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
import statistics
import tempfile
import time
from pathlib import Path

from engine_setup import TINY_REPO, engine_by_hand, start, wait


def engine_alone(gguf: Path) -> float:
    with engine_by_hand(gguf, 256) as (_, started):
        return time.perf_counter() - started


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
                    by_hand.append(engine_alone(gguf))
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
