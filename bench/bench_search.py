"""Catalog search latency through HTTP at a million entries, on SQLite and on PostgreSQL: the service's search
index (Tantivy, the default) and each database's own full-text index (FTS5; a stored tsvector with a GIN index)
against a naive LIKE (`icontains`) on the same data, and how far the answers agree.

Fills a fresh catalog on each database (PostgreSQL at 127.0.0.1:5432 when it answers: a database of its own,
dropped afterwards), starts the service on it once per search backend (offline, no worker: only the catalog path
is timed), sends the same mixed searches to each (the LIKE baseline gets the first `--baseline-searches` of them:
at a million entries each is a full scan), and prints p50/p95 and the ratio to the baseline. The search index is
timed once it is built (its build time and the web server's memory are printed; until then the database answers).
Then the first page of every search is compared: the index's with the database's full-text search on each
database, and SQLite's with PostgreSQL's. Target: p95 ≤ 20 ms on both databases with the default backend.

    .venv/bin/python bench/bench_search.py [--entries 1000000] [--searches 1000] [--baseline-searches 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.postgres import scratch_database, shared_postgres_url  # noqa: E402
from tests.service import Service, metric  # noqa: E402
from tests.synthetic_catalog import fill, searches  # noqa: E402


def wait_for_index(service: Service, size: int) -> None:
    """Start the index's build (the first search does) and wait for it; print how long it took and the web
    server's memory afterwards."""
    started = time.monotonic()
    with httpx.Client(base_url=service.url, timeout=120) as client:
        client.get("/api/models/search", params={"query": "warmup"})
        while metric(client, "llm_manager_search_index_documents") < size:
            if time.monotonic() - started > 1800:
                raise SystemExit("the search index was not built within 30 minutes")
            time.sleep(0.5)
    process = psutil.Process(service.process.pid)
    memory = [p.memory_info() for p in [process, *process.children(recursive=True)]]
    rss, shared = sum(m.rss for m in memory), sum(m.shared for m in memory)
    print(f"  search index of {size} entries built in {time.monotonic() - started:.0f} s; web server memory "
          f"{rss / 2**20:.0f} MiB resident, {(rss - shared) / 2**20:.0f} MiB of it its own (the rest shared file "
          f"pages: libraries, and SQLite's memory-mapped database)")


def measure(service: Service, queries: list[dict]) -> tuple[list[float], list[dict]]:
    """(latencies in ms, the answers' data)."""
    latencies, answers = [], []
    with httpx.Client(base_url=service.url, timeout=120) as client:
        client.get("/api/models/search", params={"query": "warmup"})
        by_index = metric(client, "llm_manager_catalog_searches_total", answered_by="index")
        for params in queries:
            started = time.perf_counter()
            response = client.get("/api/models/search", params=params)
            latencies.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
            answers.append(response.json()["data"])
        by_index = metric(client, "llm_manager_catalog_searches_total", answered_by="index") - by_index
    print(f"  {len(queries)} searches, {by_index:.0f} answered by the search index")
    return latencies, answers


def same_pages(left: list[dict], right: list[dict]) -> str:
    same_page = sum([m["id"] for m in a["items"]] == [m["id"] for m in b["items"]] for a, b in zip(left, right))
    same_total = sum(a["pagination"]["total"] == b["pagination"]["total"] for a, b in zip(left, right))
    return f"the same first page in {same_page}/{len(left)} searches, the same total in {same_total}/{len(left)}"


def percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=100)[int(fraction * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--searches", type=int, default=1000)
    parser.add_argument("--baseline-searches", type=int, default=100)
    args = parser.parse_args()
    queries = searches(args.searches)
    rows = []
    pages: dict[tuple[str, str], list[dict]] = {}
    with ExitStack() as stack:
        databases: dict[str, dict[str, str]] = {"sqlite": {}}
        if shared_postgres_url():  # a database of its own, dropped afterwards
            databases["postgresql"] = {"DATABASE_URL": stack.enter_context(scratch_database())}
        else:
            print("PostgreSQL does not answer at 127.0.0.1:5432: SQLite only")
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        for database, env in databases.items():
            data_dir = Path(tmp) / database
            env = {**env, "LLM_MANAGER_DATA_DIR": str(data_dir)}
            started = time.monotonic()
            size = fill(env, args.entries)
            print(f"{database}: catalog of {size} entries filled in {time.monotonic() - started:.0f} s")
            for backend, batch in (("index", queries), ("fts", queries), ("like", queries[:args.baseline_searches])):
                print(f"{database}, {backend}:")
                service = Service(data_dir, env={**env, "LLM_MANAGER_SEARCH_BACKEND": backend,
                                                 "LLM_MANAGER_OFFLINE": "1", "LLM_MANAGER_LOG_LEVEL": "WARNING"},
                                  args=["--no-worker"]).start(timeout=600)
                try:
                    if backend == "index":
                        wait_for_index(service, size)
                    latencies, answers = measure(service, batch)
                finally:
                    service.stop()
                rows.append((database, backend, len(batch), latencies))
                pages[database, backend] = answers

    print(f"\n{'database':<12}{'search':<12}{'searches':>9}{'p50 ms':>10}{'p95 ms':>10}")
    for database, backend, count, latencies in rows:
        print(f"{database:<12}{backend:<12}{count:>9}{percentile(latencies, .5):>10.1f}"
              f"{percentile(latencies, .95):>10.1f}")
    for database in databases:
        p95 = {backend: percentile(latencies, .95) for d, backend, _, latencies in rows if d == database}
        print(f"{database}: search index p95 {p95['index']:.1f} ms, {p95['like'] / p95['index']:.1f}x faster than "
              f"the LIKE baseline, {p95['fts'] / p95['index']:.1f}x faster than the database's full-text index "
              f"(target <= 20 ms: {'met' if p95['index'] <= 20 else 'NOT met'})")
        print(f"  search index and {database}'s full-text index: "
              f"{same_pages(pages[database, 'index'], pages[database, 'fts'])}")
    if len(databases) == 2:
        print(f"SQLite FTS5 and PostgreSQL tsvector: {same_pages(pages['sqlite', 'fts'], pages['postgresql', 'fts'])}")


if __name__ == "__main__":
    main()
