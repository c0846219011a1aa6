"""Load on demand: time to the first token of a cold call, against the engine's own start and first token.

Same model (a tiny random GGUF) and the same llama.cpp engine in one run, round after round:
- by hand: the engine started with the argv the service would give it, timed from its start until the first
  streamed chunk of a chat answer (its probe polled every 5 ms, then the request sent);
- through the service: a streamed `POST /v1/chat/completions` for the model while no deployment of it runs
  (the first round: no deployment at all; later rounds: its deployment stopped), until the first chunk.
The figure is what load on demand adds to the engine's own start. Target: ≤ 0.3 s.

    .venv/bin/python bench/bench_load_on_demand.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from engine_setup import TINY_REPO, engine_by_hand, start

CONTEXT = 2048  # what the service gives llama.cpp when the deployment does not say
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True}


def first_chunk(client: httpx.Client, url: str, body: dict) -> None:
    with client.stream("POST", url, json=body) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                return
    raise AssertionError("no chunk")


def engine_alone(gguf: Path) -> float:
    with engine_by_hand(gguf, CONTEXT) as (port, started), httpx.Client(timeout=60) as client:
        first_chunk(client, f"http://127.0.0.1:{port}/v1/chat/completions", {**CHAT, "model": "tiny"})
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hub, service, gguf = start(Path(tmp))
        by_hand, cold = [], []
        try:
            with service.client(timeout=120) as client:
                for _ in range(args.rounds):
                    by_hand.append(engine_alone(gguf))
                    started = time.perf_counter()
                    first_chunk(client, "/v1/chat/completions", {**CHAT, "model": TINY_REPO})
                    cold.append(time.perf_counter() - started)
                    (deployment,) = client.get("/api/deployments/list").json()["data"]["items"]
                    client.put(f"/api/deployments/{deployment['deployment_id']}/stop")
        finally:
            service.stop()
            hub.stop()
    hand, ours = statistics.median(by_hand), statistics.median(cold)
    print(f"rounds: {args.rounds} (medians; the first cold call creates the deployment, the others restart it)")
    print(f"engine by hand, start to first chunk:        {hand * 1000:8.0f} ms")
    print(f"cold call through the service, first chunk: {ours * 1000:8.0f} ms")
    print(f"added: {(ours - hand) * 1000:.0f} ms = {ours / hand:.2f}x the engine alone (target <= 300 ms)")


if __name__ == "__main__":
    main()
