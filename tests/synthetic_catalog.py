"""A synthetic catalog of any size and a mix of searches over it: shared by bench/bench_search.py and the search
parity test, so both fill a database the same way (fast: batched inserts in large transactions)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ["llama", "qwen", "mistral", "gemma", "phi", "falcon", "bert", "gpt2", "bloom", "mixtral", "deepseek",
            "starcoder", "codegen", "opt", "pythia", "t5", "whisper", "clip", "vit", "roberta"]
SUFFIXES = ["instruct", "chat", "base", "coder", "vision", "math", "uncensored", "gguf", "awq", "gptq"]
TYPES = ["text-generation", "text-classification", "fill-mask", "conversational", "summarization",
         "translation", "feature-extraction", "image-classification"]
ORGS = [f"org{n}" for n in range(500)]

FILL_SCRIPT = """
import random
import django
django.setup()
from django.db import transaction
from catalog.models import CatalogModel
families, suffixes, types, orgs = {families!r}, {suffixes!r}, {types!r}, {orgs!r}
rng = random.Random(7)
batch = []
for n in range({entries}):
    family, suffix = rng.choice(families), rng.choice(suffixes)
    source = "huggingface" if n % 10 else "ollama"
    model_id = (f"{{rng.choice(orgs)}}/{{family}}-{{rng.randint(1, 70)}}b-{{suffix}}-{{n}}" if source == "huggingface"
                else f"{{family}}{{n}}:{{rng.randint(1, 70)}}b")
    batch.append(CatalogModel(
        model_id=model_id, source=source, name=model_id.split("/")[-1],
        description=f"A {{suffix}} model of the {{family}} family, number {{n}}.",
        model_type=rng.choice(types), downloads=rng.randint(0, 10**7), likes=rng.randint(0, 10**4),
        trending_score=rng.random() * 100, tags=[family, suffix, "transformers"]))
    if len(batch) == 50000:
        with transaction.atomic():
            CatalogModel.objects.bulk_create(batch, batch_size=5000)
        batch = []
with transaction.atomic():
    CatalogModel.objects.bulk_create(batch, batch_size=5000)
print(CatalogModel.objects.count())
"""


def fill(env: dict[str, str], entries: int) -> int:
    """Migrate the database `env` names (LLM_MANAGER_DATA_DIR, DATABASE_URL) and add `entries` entries; the
    catalog's size afterwards."""
    env = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "llm_manager.settings"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO_ROOT, env=env, check=True)
    script = FILL_SCRIPT.format(families=FAMILIES, suffixes=SUFFIXES, types=TYPES, orgs=ORGS, entries=entries)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, check=True, capture_output=True,
                          text=True)
    return int(done.stdout.split()[-1])


def searches(count: int, seed: int = 11) -> list[dict]:
    """Query parameters for /api/models/search: words, two words, prefixes as typed, `family3.2`-style phrases,
    with filters, sort orders and later pages mixed in."""
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        params: dict = {}
        kind = rng.random()
        if kind < 0.35:
            params["query"] = rng.choice(FAMILIES)
        elif kind < 0.6:
            params["query"] = f"{rng.choice(FAMILIES)} {rng.choice(SUFFIXES)}"
        elif kind < 0.75:
            params["query"] = rng.choice(FAMILIES)[:3]  # a prefix, as typed
        elif kind < 0.85:
            params["query"] = f"{rng.choice(FAMILIES)}-{rng.randint(1, 70)}b"  # a phrase of two words
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
