"""Well-known Ollama library models, so search answers on a first run with no network; sync refreshes them."""

import json
from pathlib import Path

from django.db import migrations

SEED_FILE = Path(__file__).resolve().parent.parent / "data" / "ollama_library.json"
CAPABILITY_TYPES = ("embedding", "vision", "tools", "thinking")


def seed(apps, schema_editor):
    CatalogModel = apps.get_model("catalog", "CatalogModel")
    for entry in json.loads(SEED_FILE.read_text()):
        capabilities = entry["capabilities"]
        CatalogModel.objects.get_or_create(
            source="ollama",
            model_id=entry["name"],
            defaults={
                "name": entry["name"],
                "description": entry["description"],
                "model_type": next((c for c in CAPABILITY_TYPES if c in capabilities), "text"),
                "parameters": entry["sizes"][0].upper() if len(entry["sizes"]) == 1 else "",
                "tags": [*capabilities, *entry["sizes"]],
                "details": {"capabilities": capabilities, "sizes": entry["sizes"], "seeded": True},
            },
        )


def unseed(apps, schema_editor):
    apps.get_model("catalog", "CatalogModel").objects.filter(source="ollama", details__seeded=True).delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_search_index")]
    operations = [migrations.RunPython(seed, unseed)]
