"""The project's shape (docs/architecture.md): apps that depend one way, and sources that are plugins."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.service import REPO_ROOT

PRODUCT_PACKAGES = ("core", "catalog", "downloads", "deployments", "inference", "system", "llm_manager")
SOURCE_NAME = re.compile(r"""["'](?:ollama|huggingface|modelscope)["']""")


def test_apps_depend_one_way():
    """import-linter's layers contract in pyproject.toml: an import that climbs a layer fails here."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_only_the_source_plugins_name_a_source():
    """Outside catalog/sources (and migrations and settings), no code names a source: it asks the registry."""
    naming = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if relative.startswith("catalog/sources/") or "/migrations/" in relative or relative.endswith("settings.py"):
                continue
            naming += [f"{relative}:{number}: {line.strip()}"
                       for number, line in enumerate(path.read_text().splitlines(), start=1) if SOURCE_NAME.search(line)]
    assert naming == []


def test_every_source_module_is_discovered_and_keeps_the_contract():
    from catalog.sources import SOURCES, ModelSource

    modules = sorted(path.stem for path in (REPO_ROOT / "catalog" / "sources").glob("*.py")
                     if "SOURCE = " in path.read_text())
    assert sorted(source.__module__.rsplit(".", 1)[1] for source in SOURCES.values()) == modules
    for name, source in SOURCES.items():
        assert source.name == name and isinstance(source, ModelSource) and source.label
        required = ("canonical_id", "model_info", "download_plan", "model_files", *(("search",) if source.searchable
                                                                                   else ()))
        for method in required:
            assert getattr(type(source), method) is not getattr(ModelSource, method), f"{name} lacks {method}"
