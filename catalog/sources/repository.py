"""What the sources that serve git-like repositories of files share (Hugging Face, ModelScope): reading
quantizations from GGUF file names, and handing a snapshot directory to an engine."""

from __future__ import annotations

import json
import re
from pathlib import Path

from catalog.sources import ModelFiles, StoredModel

GGUF_QUANT = re.compile(r"(?i)(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|F16|BF16|F32)\.gguf$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def gguf_quantizations(filenames: list[str]) -> list[str]:
    found = []
    for filename in filenames:
        match = GGUF_QUANT.search(filename)
        if match and match.group(1).upper() not in found:
            found.append(match.group(1).upper())
    return found


def snapshot_model_files(model: StoredModel, snapshot: Path, env: dict[str, str]) -> ModelFiles:
    """A repository snapshot as an engine takes it: its smallest GGUF if it has one, else the directory of a
    transformers model (its config.json read)."""
    ggufs = sorted((f for f in model.files if f.path.lower().endswith(".gguf")), key=lambda f: f.size)
    if ggufs:
        return ModelFiles(model_id=model.model_id, source=model.source, format="gguf", path=snapshot / ggufs[0].path,
                          weights_bytes=ggufs[0].size, env=env)
    config_path = snapshot / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    weights = sum(f.size for f in model.files if f.path.endswith(WEIGHT_SUFFIXES))
    return ModelFiles(model_id=model.model_id, source=model.source, format="safetensors", path=snapshot,
                      weights_bytes=weights, config=config, env=env)
