"""Chaos, bounded and repeatable: downloads that must end complete and verified while the processes die under them.

Runs the service the usual Django way (`migrate`, then `qcluster` and `daphne` as processes of their own, as systemd
units or containers run it) against the fake Hugging Face hub and Debian's docker-registry (the Ollama source) on
127.0.0.1, each connection capped (a CDN edge's per-connection cap) so that downloads last long enough to be hit.
Starts N downloads of files of different sizes, then SIGKILLs the worker cluster and the web server at moments drawn
from the seed, starting each again at once as systemd's `Restart=always` would. Then checks that every task ended
`completed`, every file's sha256 is right, no `.llmpart` is left and no task is stuck, and prints the bytes fetched
twice next to the bytes of all files (the baseline: a run without kills fetches each byte once).

Exits 1 if a check fails. The suite runs it briefly (tests/downloads/test_chaos.py); the full run:

    .venv/bin/python bench/chaos_downloads.py [--seed N] [--downloads 20] [--worker-kills 10] [--server-kills 3]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.fakes.hub import FakeHub  # noqa: E402
from tests.fakes.registry import Registry, registry_available  # noqa: E402
from tests.fakes.throttled_proxy import ThrottledRelay  # noqa: E402
from tests.service import SplitService, wait_for  # noqa: E402

MIB = 1024 * 1024
REFETCH_BOUND_PER_KILL = 64 * MIB  # the performance issue's bound on what one SIGKILL may cost


def build_models(seed: int, count: int, ollama_share: float, hub: FakeHub, registry: Registry | None) -> list[dict]:
    """`count` models of 0.5–12 MiB, some of them Ollama models in the registry; returns what to download."""
    rng = random.Random(seed)
    models = []
    for index in range(count):
        size = rng.randint(MIB // 2, 12 * MIB)
        weights = rng.randbytes(size)
        if registry is not None and rng.random() < ollama_share:
            name = f"chaos-{index}"
            registry.push_ollama_model(name, "latest", [("model", weights), ("template", b"{{ .Prompt }}")],
                                       {"model_format": "gguf", "model_family": "llama"})
            models.append({"source": "ollama", "model_id": f"{name}:latest", "weights": weights})
        else:
            repo_id = f"chaos/model-{index}"
            hub.add_repo(repo_id, files={"config.json": b'{"model_type": "llama"}', "model.safetensors": weights})
            models.append({"source": "huggingface", "model_id": repo_id, "weights": weights})
    return models


def stored_blob(data_dir: Path, model: dict) -> Path:
    digest = hashlib.sha256(model["weights"]).hexdigest()
    if model["source"] == "ollama":
        return data_dir / "models/ollama/blobs" / f"sha256-{digest}"
    folder = "models--" + model["model_id"].replace("/", "--")
    return data_dir / "models/huggingface/hub" / folder / "blobs" / digest


def tasks_by_id(client: httpx.Client) -> dict[str, dict] | None:
    """Every task, or None while the web server is down."""
    try:
        response = client.get("/api/downloads/list", params={"page_size": 100})
    except httpx.HTTPError:
        return None
    return {task["id"]: task for task in response.json()["data"]["items"]} if response.status_code == 200 else None


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="llm-manager-chaos-"))
    hub = FakeHub().start()
    hub.bytes_per_second = args.rate_mib * MIB
    registry = relay = None
    if registry_available():
        registry = Registry(work / "registry").start()
        relay = ThrottledRelay(registry.port, args.rate_mib * MIB).start()
    else:
        print("docker-registry is not installed: Hugging Face downloads only")
    service = None
    failures: list[str] = []
    try:
        models = build_models(args.seed, args.downloads, 0.25, hub, registry)
        total = sum(len(m["weights"]) for m in models)
        by_source = {s: sum(m["source"] == s for m in models) for s in ("huggingface", "ollama")}
        print(f"chaos: {len(models)} downloads ({by_source['huggingface']} huggingface, {by_source['ollama']} "
              f"ollama), {total / MIB:.1f} MiB, each connection capped at {args.rate_mib} MiB/s, seed {args.seed}")
        service = SplitService(work / "data", {
            "HF_ENDPOINT": hub.url, "HF_TOKEN": "", "HF_HUB_CACHE": str(work / "empty/hf"),
            "OLLAMA_MODELS": str(work / "empty/ollama"),
            "LLM_MANAGER_OLLAMA_REGISTRY": relay.url if relay else "http://127.0.0.1:9",
            "LLM_MANAGER_OLLAMA_LIBRARY": "http://127.0.0.1:9",
            "LLM_MANAGER_DOWNLOAD_PART_THRESHOLD_MB": "1", "LLM_MANAGER_DOWNLOAD_STALE_SECONDS": "3",
            "LLM_MANAGER_DOWNLOAD_BACKOFF_SECONDS": "0.2", "LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB": "0.01",
            "LLM_MANAGER_MAX_CONCURRENT_DOWNLOADS": "4",
        }).start()
        started = time.monotonic()
        with service.client() as client:
            for model in models:
                answer = client.post("/api/downloads/start", json={"model_id": model["model_id"],
                                                                   "source": model["source"]})
                if answer.status_code != 200:
                    failures.append(f"start {model['model_id']}: {answer.status_code} {answer.text[:200]}")
                    continue
                model["task_id"] = answer.json()["data"]["task"]["id"]

            kills = ["worker"] * args.worker_kills + ["server"] * args.server_kills
            rng.shuffle(kills)
            landed = {"worker": 0, "server": 0}
            for kind in kills:
                time.sleep(rng.uniform(0.5, 3.0))
                tasks = tasks_by_id(client) or {}
                if tasks and all(task["status"] == "completed" for task in tasks.values()):
                    break  # nothing left to hit
                landed[kind] += 1
                if kind == "worker":
                    service.kill(service.clusters[-1])
                    time.sleep(rng.uniform(0.0, 1.0))
                    service.start_cluster()
                else:
                    service.kill(service.webs[-1])
                    service.start_web()
            print(f"kills: {landed['worker']} of the worker cluster, {landed['server']} of the web server "
                  f"(of {args.worker_kills} and {args.server_kills} planned; the rest found nothing left to hit)")

            def settled() -> dict | None:
                tasks = tasks_by_id(client)
                return tasks if tasks and all(t["status"] in ("completed", "failed", "cancelled")
                                              for t in tasks.values()) else None

            try:
                tasks = wait_for(settled, args.max_seconds, interval=0.5, what="every download to end")
            except TimeoutError:
                tasks = tasks_by_id(client) or {}
                stuck = [f"{t['model_id']} {t['status']} {t['downloaded_bytes']}/{t['total_bytes']}"
                         for t in tasks.values() if t["status"] != "completed"]
                failures.append(f"stuck after {args.max_seconds}s: {stuck}")
            took = time.monotonic() - started

        for model in models:
            task = tasks.get(model.get("task_id", ""))
            if task is None or task["status"] != "completed":
                failures.append(f"{model['model_id']}: {task and (task['status'], task['error_code'], task['error'])}")
                continue
            blob = stored_blob(service.data_dir, model)
            if not blob.exists() or hashlib.sha256(blob.read_bytes()).hexdigest() != blob.name.removeprefix("sha256-"):
                failures.append(f"{model['model_id']}: {blob} missing or with other bytes")
        partials = sorted(str(p) for p in (service.data_dir / "models").rglob("*.llmpart*"))
        if partials:
            failures.append(f"partial files left: {partials}")

        hub_sizes = sum(len(m["weights"]) for m in models if m["source"] == "huggingface")
        hub_shas = {hashlib.sha256(m["weights"]).hexdigest() for m in models if m["source"] == "huggingface"}
        hub_twice = sum(hub.bytes_sent.get(s, 0) - hub.undelivered.get(s, 0) for s in hub_shas) - hub_sizes
        registry_sizes = total - hub_sizes
        # The relay counts whole responses (headers, manifests and config blobs too): an upper bound.
        registry_twice = max(0, relay.delivered - registry_sizes) if relay else 0
        twice = hub_twice + registry_twice
        kills_landed = sum(landed.values())
        print(f"{'all' if not failures else 'NOT all'} {len(models)} downloads completed and verified in "
              f"{took:.1f} s; .llmpart files left: {len(partials)}")
        print(f"fetched twice: {twice / MIB:.2f} MiB ({hub_twice / MIB:.2f} MiB from the hub, "
              f"{registry_twice / MIB:.2f} MiB from the registry, its headers and manifests included) = "
              f"{twice / total:.2%} of the {total / MIB:.1f} MiB a run without kills fetches; "
              f"{twice / max(kills_landed, 1) / MIB:.2f} MiB a kill (bound: {REFETCH_BOUND_PER_KILL // MIB} MiB)")
        if twice > REFETCH_BOUND_PER_KILL * max(kills_landed, 1):
            failures.append(f"{twice} bytes fetched twice: over the bound")
    finally:
        if service is not None:
            service.stop()
            if failures:
                print(service.logs()[-6000:])
        if relay:
            relay.stop()
        if registry:
            registry.stop()
        hub.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None, help="drawn and printed when not given")
    parser.add_argument("--downloads", type=int, default=20)
    parser.add_argument("--worker-kills", type=int, default=10)
    parser.add_argument("--server-kills", type=int, default=3)
    parser.add_argument("--rate-mib", type=float, default=0.25, help="each connection's cap, MiB/s")
    parser.add_argument("--max-seconds", type=float, default=300, help="how long the downloads may take after the kills")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1, 2**31)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
