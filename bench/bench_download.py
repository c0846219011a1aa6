"""Download throughput: our downloader against curl, `curl && sha256sum`, aria2c and huggingface_hub, and bytes
re-fetched after a kill.

The fake Hugging Face hub on 127.0.0.1 holds a 1 GiB LFS file (it redirects to a storage host). Two links:
- raw loopback (default): the storage host is the hub itself, bound by CPU on two shared cores;
- `--capped`: the storage host is a file server that caps each connection (token bucket, `--per-connection-mbs`,
  default 40 MB/s) and the link as a whole (`--total-mbs`, default 480 MB/s) and sends with sendfile, as a CDN
  edge or a long round trip caps each TCP connection. Several parallel curls first show it reaching its total.
In one run it times each downloader (median of `--runs`):
- curl fetching the storage URL into a file (no verification), and curl then sha256sum;
- aria2c -x 8 -s 8 (the classic parallel downloader, which verifies nothing), if installed;
- `huggingface_hub.hf_hub_download` through the hub;
- LLM Manager with its defaults: from POST /api/downloads/start to the moment the worker recorded the task
  `completed` (planning, parallel ranges, sha256 verification and placement in the hub cache included).
Capped mode then starts two downloads at once and prints how they share the link. Raw mode then kills the worker cluster (SIGKILL) at 50% of a file of each `--refetch-sizes` and reports the
bytes fetched twice: those that reached the downloader's machine twice (the target), and, apart, those the
server had only queued in its own socket send buffers at the kill, never delivered (the server's kernel counts
the bytes the client acknowledged).
Targets: capped link: ≥ 1.1× aria2c -x8 and ≥ 6× curl; raw loopback: ≥ 1.0× `curl && sha256sum`; at most
64 MiB re-fetched for a 1 GiB and a 4 GiB file alike.

    .venv/bin/python bench/bench_download.py [--capped] [--size-mib 1024] [--runs 3] [--refetch-sizes 1024,4096]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import signal
import sqlite3
import statistics
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

from capped_server import CappedFileServer  # noqa: E402

from tests.fakes.hub import FakeHub  # noqa: E402
from tests.service import Service  # noqa: E402

REPO_ID, FILENAME = "bench/one-gib", "model.safetensors"
OTHER_REPO_ID = "bench/another-gib"  # for two downloads at once


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


def make_data(size_mib: int, seed: int = 3) -> bytes:
    body = random.Random(seed).randbytes(1024 * 1024 - 8)
    # Distinct MiB blocks (its index, then a rotation of one random body), cheap to make.
    return b"".join(i.to_bytes(8, "big") + body[i % 9973:] + body[:i % 9973] for i in range(size_mib))


def parallel_curls(storage_url: str, size: int, count: int = 16) -> float:
    """Bytes per second that `count` curls of equal ranges reach together: what the link carries in all."""
    share = size // count
    started = time.perf_counter()
    curls = [subprocess.Popen(["curl", "-sSf", "-o", "/dev/null", "-r", f"{i * share}-{(i + 1) * share - 1}",
                               storage_url]) for i in range(count)]
    for curl in curls:
        curl.wait()
    return share * count / (time.perf_counter() - started)


def time_downloaders(hub: FakeHub, storage_url: str, sha256: str, tmp_dir: Path) -> dict[str, float]:
    """Seconds each downloader takes for the file, in one round."""
    results: dict[str, float] = {}
    target = tmp_dir / "fetched.bin"
    if shutil.which("curl"):
        results["curl"] = timed(lambda: subprocess.run(["curl", "-sSf", "-o", str(target), storage_url], check=True))
        target.unlink()

        def curl_and_hash():
            subprocess.run(["curl", "-sSf", "-o", str(target), storage_url], check=True)
            digest = subprocess.run(["sha256sum", str(target)], check=True, capture_output=True, text=True).stdout
            assert digest.split()[0] == sha256

        results["curl && sha256sum"] = timed(curl_and_hash)
        target.unlink()
    if shutil.which("aria2c"):
        results["aria2c -x8 -s8"] = timed(lambda: subprocess.run(
            ["aria2c", "-q", "-x", "8", "-s", "8", "--allow-overwrite=true", "--auto-file-renaming=false",
             "-d", str(tmp_dir), "-o", target.name, storage_url], check=True))
        target.unlink()

    from huggingface_hub import hf_hub_download

    results["huggingface_hub"] = timed(
        lambda: hf_hub_download(REPO_ID, FILENAME, cache_dir=tmp_dir / "hf", endpoint=hub.url, token=False))
    shutil.rmtree(tmp_dir / "hf")
    return results


def time_ours(service: Service) -> float:
    with service.client() as client:
        started = time.time()
        task = client.post("/api/downloads/start", json={"model_id": REPO_ID, "source": "huggingface",
                                                          "include": [FILENAME]}).json()["data"]["task"]
        done = wait_task(client, task["id"], interval=0.25)
        assert done["status"] == "completed", done
        seconds = completed_at(service, task["id"]) - started
        client.delete(f"/api/downloads/{task['id']}", params={"delete_files": "true"})
    return seconds


def two_at_once(service: Service, size: int) -> list[float]:
    """MB/s of each of two downloads started together: how they share the link."""
    with service.client() as client:
        started = time.time()
        tasks = [client.post("/api/downloads/start", json={"model_id": repo, "source": "huggingface",
                                                            "include": [FILENAME]}).json()["data"]["task"]
                 for repo in (REPO_ID, OTHER_REPO_ID)]
        rates = []
        for task in tasks:
            assert wait_task(client, task["id"], interval=0.25)["status"] == "completed"
            rates.append(size / (completed_at(service, task["id"]) - started) / 1e6)
            client.delete(f"/api/downloads/{task['id']}", params={"delete_files": "true"})
    return rates


def refetched_after_kill(hub: FakeHub, service: Service, sha256: str, size: int) -> tuple[int, int]:
    """(bytes that reached us twice, bytes the server sent twice) when the worker is killed at 50%."""
    with service.client() as client:
        hub.bytes_sent.clear()
        task = client.post("/api/downloads/start", json={"model_id": REPO_ID, "source": "huggingface",
                                                          "include": [FILENAME]}).json()["data"]["task"]
        wait_task(client, task["id"], lambda t: t["downloaded_bytes"] >= size // 2)
        hub.undelivered.clear()
        kill_worker_cluster(service)
        done = wait_task(client, task["id"])
        assert done["status"] == "completed", done
        client.delete(f"/api/downloads/{task['id']}", params={"delete_files": "true"})
    served_twice = hub.bytes_sent[sha256] - size
    return served_twice - hub.undelivered.get(sha256, 0), served_twice


def start_service(tmp_dir: Path, hub: FakeHub) -> Service:
    return Service(tmp_dir / "service", env={"HF_ENDPOINT": hub.url, "LLM_MANAGER_LOG_LEVEL": "WARNING",
                                             "LLM_MANAGER_DOWNLOAD_STALE_SECONDS": "3",
                                             "LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB": "0.5"}).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--capped", action="store_true", help="each connection and the link capped")
    parser.add_argument("--per-connection-mbs", type=float, default=40)
    parser.add_argument("--total-mbs", type=float, default=480)
    parser.add_argument("--refetch-sizes", default="1024,4096", help="MiB; raw mode; empty: none")
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    data = make_data(args.size_mib)
    sha256 = hashlib.sha256(data).hexdigest()
    hub = FakeHub().start()
    hub.add_repo(REPO_ID, files={FILENAME: data, "config.json": b"{}"})
    rounds: list[dict[str, float]] = []
    refetch: dict[int, tuple[int, int]] = {}
    link = None
    pair: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        capped = None
        if args.capped:
            (tmp_dir / "storage").mkdir()
            (tmp_dir / "storage" / sha256).write_bytes(data)
            other = make_data(args.size_mib, seed=4)
            hub.add_repo(OTHER_REPO_ID, files={FILENAME: other, "config.json": b"{}"})
            (tmp_dir / "storage" / hashlib.sha256(other).hexdigest()).write_bytes(other)
            del other
            capped = CappedFileServer(tmp_dir / "storage", args.per_connection_mbs * 1e6, args.total_mbs * 1e6)
            hub.storage_base = capped.start().url
        del data
        storage_url = f"{hub.storage_url}/__storage/{sha256}"
        service = start_service(tmp_dir, hub)
        try:
            if capped and shutil.which("curl"):
                link = parallel_curls(storage_url, size)
            for _ in range(args.runs):
                results = time_downloaders(hub, storage_url, sha256, tmp_dir)
                results["llm-manager"] = time_ours(service)
                rounds.append(results)
            if args.capped:
                pair = two_at_once(service, size)
            else:
                for size_mib in [int(part) for part in args.refetch_sizes.split(",") if part]:
                    blob = make_data(size_mib)
                    blob_sha = hashlib.sha256(blob).hexdigest()
                    hub.add_repo(REPO_ID, files={FILENAME: blob, "config.json": b"{}"})
                    del blob
                    refetch[size_mib] = refetched_after_kill(hub, service, blob_sha, size_mib * 1024 * 1024)
        finally:
            service.stop()
            hub.stop()
            if capped:
                capped.stop()

    seconds = {name: statistics.median(result[name] for result in rounds) for name in rounds[0]}
    rate = {name: size / value / 1e6 for name, value in seconds.items()}
    where = (f"capped link: {args.per_connection_mbs:g} MB/s per connection, {args.total_mbs:g} MB/s in all"
             if args.capped else "raw loopback")
    print(f"file: {args.size_mib} MiB, {where}; median of {args.runs}")
    if link:
        print(f"16 parallel curls reach {link / 1e6:.0f} MB/s together ({100 * link / 1e6 / args.total_mbs:.0f}% "
              "of the link's cap): the server is not the bottleneck")
    print(f"{'downloader':<20}{'seconds':>10}{'MB/s':>10}{'ours / it':>11}")
    for name, value in seconds.items():
        print(f"{name:<20}{value:>10.2f}{rate[name]:>10.0f}{rate['llm-manager'] / rate[name]:>11.2f}")
    ours = rate["llm-manager"]
    if args.capped:
        print(f"llm-manager reaches {100 * ours / args.total_mbs:.0f}% of the link's total cap")
        if "aria2c -x8 -s8" in rate:
            print(f"llm-manager / aria2c -x8: {ours / rate['aria2c -x8 -s8']:.2f}x (target >= 1.1x)")
        if "curl" in rate:
            print(f"llm-manager / curl: {ours / rate['curl']:.2f}x (target >= 6x)")
        if pair:
            print(f"two downloads at once: {pair[0]:.0f} and {pair[1]:.0f} MB/s, {sum(pair):.0f} in all "
                  f"({min(pair) / max(pair):.2f} of each other)")
    elif "curl && sha256sum" in rate:
        print(f"llm-manager / curl && sha256sum: {ours / rate['curl && sha256sum']:.2f}x (target >= 1.0x)")
    for size_mib, (twice, served_twice) in refetch.items():
        print(f"re-fetched after SIGKILL at 50% of {size_mib} MiB: {twice / 2**20:.1f} MiB "
              f"({100 * twice / (size_mib * 2**20):.2f}%; target <= 64 MiB); served twice, with what sat "
              f"undelivered in the server's send buffers: {served_twice / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
