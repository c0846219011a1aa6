"""Download throughput on loopback: our downloader against curl and huggingface_hub, and bytes re-fetched after a kill.

Serves a 1 GiB file from the fake Hugging Face hub on 127.0.0.1 (an LFS file: the hub
redirects to its storage host name), then times, in the same run:
- curl fetching the storage URL into a file (no verification);
- `huggingface_hub.hf_hub_download` through the hub;
- LLM Manager: from POST /api/downloads/start to the moment the worker recorded the task
  `completed` (planning, parallel ranges, sha256 verification and placement in the hub cache included);
and finally kills the worker cluster (SIGKILL) at 50% and reports the bytes fetched twice: those that
reached the downloader's machine twice (the target), and, apart, those the server had only queued in
its own socket send buffers at the kill, never delivered (the server's kernel counts the bytes the
client acknowledged).
Targets: ≥ 0.9× curl, ≥ 1.0× huggingface_hub, < 1% re-fetched.

    .venv/bin/python bench/bench_download.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.fakes.hub import FakeHub  # noqa: E402
from tests.service import Service  # noqa: E402

REPO_ID, FILENAME = "bench/one-gib", "model.safetensors"


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def wait_task(client: httpx.Client, task_id: str, until=lambda task: task["status"] in ("completed", "failed"),
              interval: float = 0.02) -> dict:
    while True:
        task = client.get(f"/api/downloads/{task_id}").json()["data"]
        if until(task):
            return task
        time.sleep(interval)


def completed_at(service: Service, task_id: str) -> float:
    """When the worker recorded the task completed: the database's own timestamp, to the microsecond, so the
    benchmark can poll the API seldom (its requests would take CPU from the download being timed)."""
    with sqlite3.connect(service.data_dir / "llm_manager.sqlite3") as database:
        (value,) = database.execute("SELECT completed_at FROM downloads_downloadtask WHERE id = ?",
                                    (task_id,)).fetchone()
    return datetime.fromisoformat(value).replace(tzinfo=timezone.utc).timestamp()


def kill_worker_cluster(service: Service) -> None:
    serve = psutil.Process(service.process.pid)
    for cluster in [p for p in serve.children() if "qcluster" in " ".join(p.cmdline())]:
        for process in [cluster, *cluster.children(recursive=True)]:
            process.send_signal(signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    block = random.Random(3).randbytes(1024 * 1024)
    data = b"".join(hashlib.sha256(block + bytes([i % 256, i // 256])).digest() * 0 + block[i % 7:] + block[:i % 7]
                     for i in range(args.size_mib))  # distinct MiB blocks, cheap to make
    sha256 = hashlib.sha256(data).hexdigest()
    hub = FakeHub().start()
    hub.add_repo(REPO_ID, files={FILENAME: data, "config.json": b"{}"})
    storage_url = f"{hub.storage_url}/__storage/{sha256}"
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        if shutil.which("curl"):
            target = tmp_dir / "curl.bin"
            results["curl"] = timed(lambda: subprocess.run(["curl", "-sSf", "-o", str(target), storage_url], check=True))
            target.unlink()

        from huggingface_hub import hf_hub_download

        results["huggingface_hub"] = timed(
            lambda: hf_hub_download(REPO_ID, FILENAME, cache_dir=tmp_dir / "hf", endpoint=hub.url, token=False))
        shutil.rmtree(tmp_dir / "hf")

        service = Service(tmp_dir / "service", env={"HF_ENDPOINT": hub.url, "LLM_MANAGER_LOG_LEVEL": "WARNING",
                                                      "LLM_MANAGER_DOWNLOAD_STALE_SECONDS": "3",
                                                      "LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB": "0.5"}).start()
        try:
            with service.client() as client:
                started = time.time()
                task = client.post("/api/downloads/start", json={"model_id": REPO_ID, "source": "huggingface",
                                                                  "include": [FILENAME]}).json()["data"]["task"]
                done = wait_task(client, task["id"], interval=0.25)
                results["llm-manager"] = completed_at(service, task["id"]) - started
                assert done["status"] == "completed", done
                client.delete(f"/api/downloads/{task['id']}", params={"delete_files": "true"})

                hub.bytes_sent.clear()
                task = client.post("/api/downloads/start", json={"model_id": REPO_ID, "source": "huggingface",
                                                                  "include": [FILENAME]}).json()["data"]["task"]
                wait_task(client, task["id"], lambda t: t["downloaded_bytes"] >= size // 2)
                hub.undelivered.clear()
                kill_worker_cluster(service)
                done = wait_task(client, task["id"])
                assert done["status"] == "completed", done
                served_twice = hub.bytes_sent[sha256] - size
                refetched = served_twice - hub.undelivered.get(sha256, 0)
        finally:
            service.stop()
            hub.stop()

    throughput = {name: size / seconds / 1024**2 for name, seconds in results.items()}
    print(f"file: {args.size_mib} MiB on 127.0.0.1")
    print(f"{'downloader':<18}{'seconds':>10}{'MiB/s':>10}")
    for name, seconds in results.items():
        print(f"{name:<18}{seconds:>10.2f}{throughput[name]:>10.0f}")
    ours = throughput["llm-manager"]
    if "curl" in throughput:
        print(f"llm-manager / curl: {ours / throughput['curl']:.2f}x (target >= 0.9x)")
    print(f"llm-manager / huggingface_hub: {ours / throughput['huggingface_hub']:.2f}x (target >= 1.0x)")
    print(f"re-fetched after SIGKILL at 50%: {refetched} bytes = {100 * refetched / size:.2f}% (target < 1%)")
    print(f"  served twice, with what sat undelivered in the server's send buffers: {served_twice} bytes = "
          f"{100 * served_twice / size:.2f}%")


if __name__ == "__main__":
    main()
