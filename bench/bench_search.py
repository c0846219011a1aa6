"""Catalog search latency through HTTP: SQLite FTS5 against a naive LIKE (`icontains`) on the same data.

Fills a fresh catalog with 200,000 synthetic entries, starts the service twice on
that database (once per search backend, in offline mode so only the catalog path
is timed), sends the same 1,000 searches with a mix of queries and filters to each,
and prints p50/p95 of both and their ratio. Target: FTS p95 under 25 ms.

    .venv/bin/python bench/bench_search.py [--entries 200000] [--searches 1000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.service import Service  # noqa: E402

FAMILIES = ["llama", "qwen", "mistral", "gemma", "phi", "falcon", "bert", "gpt2", "bloom", "mixtral", "deepseek",
            "starcoder", "codegen", "opt", "pythia", "t5", "whisper", "clip", "vit", "roberta"]
SUFFIXES = ["instruct", "chat", "base", "coder", "vision", "math", "uncensored", "gguf", "awq", "gptq"]
TYPES = ["text-generation", "text-classification", "fill-mask", "conversational", "summarization",
         "translation", "feature-extraction", "image-classification"]
ORGS = [f"org{n}" for n in range(500)]

FILL_SCRIPT = """
import random, sys
import django
django.setup()
from catalog.models import CatalogModel
families, suffixes, types, orgs = {families!r}, {suffixes!r}, {types!r}, {orgs!r}
rng = random.Random(7)
batch = []
for n in range({entries}):
    family, suffix = rng.choice(families), rng.choice(suffixes)
    source = "huggingface" if n % 10 else "ollama"
    model_id = f"{{rng.choice(orgs)}}/{{family}}-{{rng.randint(1, 70)}}b-{{suffix}}-{{n}}" if source == "huggingface" else f"{{family}}{{n}}"
    batch.append(CatalogModel(
        model_id=model_id, source=source, name=model_id.split("/")[-1],
        description=f"A {{suffix}} model of the {{family}} family, number {{n}}.",
        model_type=rng.choice(types), downloads=rng.randint(0, 10**7), likes=rng.randint(0, 10**4),
        trending_score=rng.random() * 100, tags=[family, suffix, "transformers"]))
    if len(batch) == 5000:
        CatalogModel.objects.bulk_create(batch)
        batch = []
CatalogModel.objects.bulk_create(batch)
print(CatalogModel.objects.count())
"""


def fill(data_dir: Path, entries: int) -> None:
    env = {**os.environ, "LLM_MANAGER_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "llm_manager.settings"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO_ROOT, env=env, check=True)
    script = FILL_SCRIPT.format(families=FAMILIES, suffixes=SUFFIXES, types=TYPES, orgs=ORGS, entries=entries)
    subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, check=True)


def searches(count: int) -> list[dict]:
    rng = random.Random(11)
    result = []
    for _ in range(count):
        params: dict = {}
        kind = rng.random()
        if kind < 0.4:
            params["query"] = rng.choice(FAMILIES)
        elif kind < 0.7:
            params["query"] = f"{rng.choice(FAMILIES)} {rng.choice(SUFFIXES)}"
        elif kind < 0.85:
            params["query"] = rng.choice(FAMILIES)[:3]  # a prefix, as typed
        if rng.random() < 0.3:
            params["source"] = rng.choice(["huggingface", "ollama"])
        if rng.random() < 0.3:
            params["model_type"] = rng.choice(TYPES)
        if rng.random() < 0.3:
            params["sort"] = rng.choice(["likes", "trending", "updated"])
        if rng.random() < 0.2:
            params["page"] = rng.randint(2, 5)
        result.append(params)
    return result


def measure(service: Service, queries: list[dict]) -> list[float]:
    latencies = []
    with httpx.Client(base_url=service.url, timeout=60) as client:
        client.get("/api/models/search", params={"query": "warmup"})
        for params in queries:
            started = time.perf_counter()
            response = client.get("/api/models/search", params=params)
            latencies.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=100)[int(fraction * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--searches", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        started = time.monotonic()
        fill(data_dir, args.entries)
        print(f"catalog filled with {args.entries} entries in {time.monotonic() - started:.0f}s")
        queries = searches(args.searches)
        results = {}
        for backend in ("fts", "like"):
            service = Service(data_dir, env={"LLM_MANAGER_SEARCH_BACKEND": backend, "LLM_MANAGER_OFFLINE": "1",
                                             "LLM_MANAGER_LOG_LEVEL": "WARNING"}, args=["--no-worker"]).start()
            try:
                results[backend] = measure(service, queries)
            finally:
                service.stop()
        fts, like = results["fts"], results["like"]
        print(f"{'path':<28}{'p50 ms':>10}{'p95 ms':>10}")
        print(f"{'full-text (FTS5)':<28}{percentile(fts, .5):>10.1f}{percentile(fts, .95):>10.1f}")
        print(f"{'naive icontains (baseline)':<28}{percentile(like, .5):>10.1f}{percentile(like, .95):>10.1f}")
        print(f"ratio baseline/fts: p50 {percentile(like, .5) / percentile(fts, .5):.1f}x, "
              f"p95 {percentile(like, .95) / percentile(fts, .95):.1f}x")
        print(f"target p95 < 25 ms: {'met' if percentile(fts, .95) < 25 else 'NOT met'}")


if __name__ == "__main__":
    main()
