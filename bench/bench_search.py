"""Catalog search latency through HTTP at a million entries, on SQLite and on PostgreSQL: the full-text index of
each (FTS5; a stored tsvector with a GIN index) against a naive LIKE (`icontains`) on the same data, and how far
the two databases' full-text answers agree.

Fills a fresh catalog on each database (PostgreSQL at 127.0.0.1:5432 when it answers: a database of its own,
dropped afterwards), starts the service on it once per search backend (offline, no worker: only the catalog path
is timed), sends the same mixed searches to each (the LIKE baseline gets the first `--baseline-searches` of them:
at a million entries each is a full scan), and prints p50/p95 and the ratio to the baseline. Then the first page
of every search on SQLite and on PostgreSQL is compared: the share of pages with the same entries in the same
order, and of the same totals. Target: full-text p95 ≤ 20 ms on both databases.

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

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.postgres import scratch_database, shared_postgres_url  # noqa: E402
from tests.service import Service  # noqa: E402
from tests.synthetic_catalog import fill, searches  # noqa: E402


def measure(service: Service, queries: list[dict]) -> tuple[list[float], list[dict]]:
    """(latencies in ms, the answers' data)."""
    latencies, answers = [], []
    with httpx.Client(base_url=service.url, timeout=120) as client:
        client.get("/api/models/search", params={"query": "warmup"})
        for params in queries:
            started = time.perf_counter()
            response = client.get("/api/models/search", params=params)
            latencies.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
            answers.append(response.json()["data"])
    return latencies, answers


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
    pages: dict[str, list[dict]] = {}
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
            for backend, batch in (("fts", queries), ("like", queries[:args.baseline_searches])):
                service = Service(data_dir, env={**env, "LLM_MANAGER_SEARCH_BACKEND": backend,
                                                 "LLM_MANAGER_OFFLINE": "1", "LLM_MANAGER_LOG_LEVEL": "WARNING"},
                                  args=["--no-worker"]).start(timeout=600)
                try:
                    latencies, answers = measure(service, batch)
                finally:
                    service.stop()
                rows.append((database, backend, len(batch), latencies))
                if backend == "fts":
                    pages[database] = answers

    print(f"\n{'database':<12}{'search':<12}{'searches':>9}{'p50 ms':>10}{'p95 ms':>10}")
    for database, backend, count, latencies in rows:
        print(f"{database:<12}{backend:<12}{count:>9}{percentile(latencies, .5):>10.1f}"
              f"{percentile(latencies, .95):>10.1f}")
    for database in databases:
        fts = next(latencies for d, b, _, latencies in rows if d == database and b == "fts")
        like = next(latencies for d, b, _, latencies in rows if d == database and b == "like")
        print(f"{database}: baseline/full-text p95 {percentile(like, .95) / percentile(fts, .95):.1f}x; "
              f"full-text p95 {percentile(fts, .95):.1f} ms (target <= 20 ms: "
              f"{'met' if percentile(fts, .95) <= 20 else 'NOT met'})")
    if len(pages) == 2:
        same_page = same_total = 0
        for sqlite_page, postgres_page in zip(pages["sqlite"], pages["postgresql"]):
            same_page += [m["id"] for m in sqlite_page["items"]] == [m["id"] for m in postgres_page["items"]]
            same_total += sqlite_page["pagination"]["total"] == postgres_page["pagination"]["total"]
        print(f"SQLite FTS5 and PostgreSQL tsvector: the same first page in {same_page}/{len(queries)} searches, "
              f"the same total in {same_total}/{len(queries)}")


if __name__ == "__main__":
    main()
