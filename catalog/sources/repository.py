"""What the sources that serve git-like repositories of files share (Hugging Face, ModelScope): reading
quantizations from GGUF file names, and handing a snapshot directory to an engine."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from catalog.sources import ModelFileChoiceError, ModelFiles, StoredFile, StoredModel

GGUF_QUANT = re.compile(r"(?i)(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|F16|BF16|F32)\.gguf$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def gguf_quantizations(filenames: list[str]) -> list[str]:
    found = []
    for filename in filenames:
        match = GGUF_QUANT.search(filename)
        if match and match.group(1).upper() not in found:
            found.append(match.group(1).upper())
    return found


# Which quantization a GGUF repository's deployment takes when the caller does not say: the common sweet spots of
# size and quality first, then higher precision, then the smallest quantizations.
PREFERRED_QUANTIZATIONS = ("Q4_K_M", "Q5_K_M", "Q4_K_S", "Q5_K_S", "Q6_K", "Q8_0", "Q4_0", "IQ4_XS", "IQ4_NL", "Q5_0",
                           "Q3_K_L", "Q3_K_M", "BF16", "F16", "Q3_K_S", "IQ3_M", "IQ3_XS", "Q2_K", "F32")
PROJECTOR = re.compile(r"(?i)mmproj|projector")  # a vision model's image encoder, never the model itself
SHARD = re.compile(r"(?i)-(\d{5})-of-(\d{5})\.gguf$")  # llama.cpp's split GGUF: engines take the first shard


@dataclass
class GgufModel:
    """One GGUF model of a repository: a single file, or the shards of a split one (`path` is the first shard)."""

    path: str
    size: int
    quantization: str  # upper case, "" when its name does not say
    shards: list[str]


def gguf_models(files: list[StoredFile]) -> list[GgufModel]:
    """The repository's GGUF models: projectors left out, a split model's shards as one (complete ones only)."""
    groups: dict[str, list[StoredFile]] = {}
    for file in files:
        if not file.path.lower().endswith(".gguf") or PROJECTOR.search(Path(file.path).name):
            continue
        shard = SHARD.search(file.path)
        groups.setdefault(file.path[: shard.start()] + ".gguf" if shard else file.path, []).append(file)
    found = []
    for key, members in sorted(groups.items()):
        members.sort(key=lambda f: f.path)
        shard = SHARD.search(members[0].path)
        if shard and (int(shard[1]) != 1 or len(members) != int(shard[2])):
            continue  # a split model of which not all shards were downloaded
        quantization = GGUF_QUANT.search(key)
        found.append(GgufModel(path=members[0].path, size=sum(f.size for f in members),
                               quantization=quantization[1].upper() if quantization else "",
                               shards=[f.path for f in members]))
    return found


def choose_gguf(models: list[GgufModel], *, file: str = "", quantization: str = "") -> tuple[GgufModel, str]:
    """The GGUF model a deployment takes, and why: the one `file` names (any of its shards), the one of
    `quantization`, or without either the sensible one (the only one, else by PREFERRED_QUANTIZATIONS, else the
    largest of those whose quantization the name tells)."""
    choices = [m.path for m in models]
    if file:
        named = [m for m in models if file in m.shards]
        if not named:
            raise ModelFileChoiceError("VALIDATION_ERROR", f"file: {file} is not one of the GGUF models here",
                                       choices)
        return named[0], "the file asked for"
    if quantization:
        matching = [m for m in models if m.quantization == quantization.upper()]
        if len(matching) == 1:
            return matching[0], f"the quantization asked for ({matching[0].quantization})"
        if not matching:
            known = sorted({m.quantization for m in models if m.quantization})
            raise ModelFileChoiceError("VALIDATION_ERROR", f"quantization: no {quantization} here; there are "
                                       f"{', '.join(known) or 'no named quantizations'}", choices)
        raise ModelFileChoiceError("AMBIGUOUS_MODEL_FILE", f"several {quantization} files; choose one with `file`",
                                   [m.path for m in matching])
    if len(models) == 1:
        return models[0], "the only GGUF model in the repository"
    ranked = [m for m in models if m.quantization in PREFERRED_QUANTIZATIONS]
    if ranked:
        best = min(ranked, key=lambda m: (PREFERRED_QUANTIZATIONS.index(m.quantization), m.path))
        if sum(m.quantization == best.quantization for m in ranked) == 1:
            return best, f"{best.quantization}: the first of the preferred quantizations the repository has"
        raise ModelFileChoiceError("AMBIGUOUS_MODEL_FILE", f"several {best.quantization} files; choose one with "
                                   "`file`", [m.path for m in ranked if m.quantization == best.quantization])
    named = [m for m in models if m.quantization]
    if named:
        best = max(named, key=lambda m: (m.size, m.path))
        return best, f"{best.quantization}: the largest of the quantizations the repository has"
    raise ModelFileChoiceError("AMBIGUOUS_MODEL_FILE", "several GGUF files and none names its quantization; choose "
                               "one with `file`", choices)


def snapshot_model_files(model: StoredModel, snapshot: Path, env: dict[str, str], *, file: str = "",
                         quantization: str = "") -> ModelFiles:
    """A repository snapshot as an engine takes it: one of its GGUF models if it has any (see choose_gguf), else
    the directory of a transformers model (its config.json read)."""
    ggufs = gguf_models(model.files)
    if ggufs:
        chosen, reason = choose_gguf(ggufs, file=file, quantization=quantization)
        return ModelFiles(model_id=model.model_id, source=model.source, format="gguf", path=snapshot / chosen.path,
                          weights_bytes=chosen.size, env=env, file=chosen.path, file_reason=reason)
    if file or quantization:
        raise ModelFileChoiceError("VALIDATION_ERROR", f"{'file' if file else 'quantization'}: {model.model_id} has "
                                   "no GGUF files to choose from (the engine takes the whole directory)", [])
    config_path = snapshot / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    weights = sum(f.size for f in model.files if f.path.endswith(WEIGHT_SUFFIXES))
    return ModelFiles(model_id=model.model_id, source=model.source, format="safetensors", path=snapshot,
                      weights_bytes=weights, config=config, env=env)
