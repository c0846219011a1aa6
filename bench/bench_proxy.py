"""What the proxy adds: the same requests straight to the engine, through /api/chat/{id} and /v1/chat/completions,
each with an API key sent (as every caller of a protected service does).

One tiny GGUF deployment on llama.cpp; in one run:
- non-streaming chat (1 token): latency p50/p95 of each path, and what the proxy adds;
- streaming chat: time to the first chunk, direct and through the proxy;
- throughput with 16 concurrent clients, as a ratio to direct, and the CPU each process spent per request
  (engine, LLM Manager's web server, the benchmark's clients): on two shared cores they bound each other, so the
  clients send through http.client's keep-alive connections (`--client httpx` for httpx's, which cost three
  times the CPU: on a real server the callers are elsewhere and cost it nothing).
  The paths take turns over several rounds, so that the machine's drift from second to second touches
  them alike.
- the last path uses a key with a requests-per-minute limit: each request is counted (in the database, there
  being no Redis) before it is passed on.
Targets: added p50 ≤ 1.5 ms with a key (LiteLLM publishes about 3 ms); throughput ≥ 0.9× direct.

    .venv/bin/python bench/bench_proxy.py [--requests 300] [--load-requests 2400] [--rounds 4] [--client httpx]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
from engine_setup import TINY_REPO, start, wait

MESSAGES = [{"role": "user", "content": "Hello!"}]


def percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=100)[int(fraction * 100) - 1]


class KeptAlive:
    """POSTs of one JSON body through one keep-alive http.client connection."""

    def __init__(self, base: str, path: str, body: dict, headers: dict):
        address = urlsplit(base)
        self.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
        self.path, self.body = path, json.dumps(body).encode()
        self.headers = {**headers, "Content-Type": "application/json"}

    def post(self) -> int:
        self.connection.request("POST", self.path, self.body, self.headers)
        response = self.connection.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self.connection.close()


class Httpx:
    """The same through an httpx client."""

    def __init__(self, base: str, path: str, body: dict, headers: dict):
        self.client, self.path, self.body = httpx.Client(base_url=base, timeout=120, headers=headers), path, body

    def post(self) -> int:
        return self.client.post(self.path, json=self.body).status_code

    def close(self) -> None:
        self.client.close()


CLIENTS = {"http.client": KeptAlive, "httpx": Httpx}
Caller = KeptAlive | Httpx


def latencies(caller: Caller, count: int) -> list[float]:
    result = []
    for _ in range(count):
        started = time.perf_counter()
        status = caller.post()
        result.append((time.perf_counter() - started) * 1000)
        assert status == 200
    return result


def first_chunk(client: httpx.Client, url: str, body: dict, count: int) -> list[float]:
    result = []
    for _ in range(count):
        started = time.perf_counter()
        with client.stream("POST", url, json={**body, "stream": True}) as response:
            seen = False
            for line in response.iter_lines():
                if line.startswith("data: ") and not seen:
                    result.append((time.perf_counter() - started) * 1000)
                    seen = True
    return result


def new_key(service, name: str, *flags: str) -> dict[str, str]:
    """A key made with `manage.py apikey create`, as the header that sends it."""
    return {"Authorization": f"Bearer {service.create_key(name, '--scopes', 'read,inference', *flags)}"}


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(process.cpu_times()[:2]) for process in processes)


def throughput(client: type[Caller], base: str, url: str, body: dict, headers: dict, clients: int,
               per_client: int, processes: dict[str, list[psutil.Process]]) -> tuple[int, float, dict[str, float]]:
    """(requests answered, seconds taken, CPU seconds each named group of processes spent meanwhile)."""
    done = []

    def run():
        caller = client(base, url, body, headers)
        try:
            for _ in range(per_client):
                assert caller.post() == 200
                done.append(1)
        finally:
            caller.close()

    threads = [threading.Thread(target=run) for _ in range(clients)]
    cpu_before = {name: cpu_seconds(group) for name, group in processes.items()}
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return len(done), seconds, {name: cpu_seconds(group) - cpu_before[name] for name, group in processes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--load-requests", type=int, default=2400, help="per path, at 16 clients, all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--client", choices=CLIENTS, default="http.client", help="what the benchmark's callers use")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hub, service, _ = start(Path(tmp))
        try:
            with service.client(timeout=120) as client:
                deployment = client.post("/api/deployments/start", json={
                    "model_id": TINY_REPO, "model_source": "huggingface", "max_model_len": 256,
                    "name": "bench"}).json()["data"]
                url = f"/api/deployments/{deployment['deployment_id']}"
                wait(lambda: client.get(url).json()["data"]["status"] == "running")
                engine = f"http://127.0.0.1:{deployment['port']}"
                body = {"messages": MESSAGES, "max_tokens": 1, "temperature": 0}
                key, counted_key = new_key(service, "bench"), new_key(service, "bench-rpm", "--rpm", "1000000000")
                client.headers.update(key)
                paths = {
                    "direct": (engine, "/v1/chat/completions", {**body, "model": "bench"}, {}),
                    "/api/chat/{id} + key": (service.url, f"/api/chat/{deployment['deployment_id']}", body, key),
                    "/v1/chat + key": (service.url, "/v1/chat/completions", {**body, "model": "bench"}, key),
                    "/v1/chat + key, rpm": (service.url, "/v1/chat/completions", {**body, "model": "bench"},
                                            counted_key),
                }
                results = {}
                for name, (base, path, payload, headers) in paths.items():
                    caller = CLIENTS[args.client](base, path, payload, headers)
                    latencies(caller, 20)  # warm up
                    results[name] = (latencies(caller, args.requests),)
                    caller.close()
                    with httpx.Client(base_url=base, timeout=120, headers=headers) as session:
                        results[name] += (first_chunk(session, path, {**payload, "max_tokens": 4}, 50),)
                engine_process = psutil.Process(client.get(url).json()["data"]["pid"])
                web = [child for child in psutil.Process(service.process.pid).children() if "daphne" in child.cmdline()]
                processes = {"engine": [engine_process, *engine_process.children(recursive=True)], "web": web,
                             "clients": [psutil.Process()]}
                totals = {name: [0, 0.0, dict.fromkeys(processes, 0.0)] for name in paths}
                for _ in range(args.rounds):
                    for name, (base, path, payload, headers) in paths.items():
                        done, seconds, cpu = throughput(CLIENTS[args.client], base, path, payload, headers, 16,
                                                        max(1, args.load_requests // 16 // args.rounds), processes)
                        totals[name][0] += done
                        totals[name][1] += seconds
                        for group, spent in cpu.items():
                            totals[name][2][group] += spent
                rates = {name: done / seconds for name, (done, seconds, _) in totals.items()}
                cpu_per_request = {name: {group: spent * 1000 / done for group, spent in cpu.items()}
                                   for name, (done, _, cpu) in totals.items()}
                # The engine outlives the service by design: delete the deployment, with a key that may.
                manager = {"Authorization": f"Bearer {service.create_key('bench-manage', '--scopes', 'manage')}"}
                assert client.delete(url, headers=manager).status_code == 200
        finally:
            service.stop()
            hub.stop()
    direct_lat, direct_first = results["direct"]
    print(f"{'path':<24}{'p50 ms':>9}{'p95 ms':>9}{'added p50':>11}{'1st chunk':>11}{'req/s @16':>11}{'ratio':>8}")
    for name, (lat, first) in results.items():
        print(f"{name:<24}{percentile(lat, .5):>9.2f}{percentile(lat, .95):>9.2f}"
              f"{percentile(lat, .5) - percentile(direct_lat, .5):>11.2f}{statistics.median(first):>11.2f}"
              f"{rates[name]:>11.1f}{rates[name] / rates['direct']:>8.2f}")
    print("targets: added p50 <= 1.5 ms with a key; throughput ratio >= 0.9")
    print(f"\nCPU ms per request at 16 clients ({args.client}, {psutil.cpu_count()} cores)")
    print(f"{'path':<24}" + "".join(f"{name:>10}" for name in processes) + f"{'total':>10}")
    for name, cpu in cpu_per_request.items():
        print(f"{name:<24}" + "".join(f"{value:>10.2f}" for value in cpu.values()) + f"{sum(cpu.values()):>10.2f}")


if __name__ == "__main__":
    main()
