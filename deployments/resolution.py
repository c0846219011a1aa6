"""From a downloaded model to what an engine needs: its files (through the model's source), its shape, the
memory it takes, and a chat template the engine can read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from django.conf import settings

from catalog import selectors as catalog
from catalog.sources import SOURCES, ModelFileChoiceError, ModelFiles, RemoteModelNotFound
from core.api import ApiError
from deployments.gguf_header import GGUFError, read_metadata
from deployments.ollama_template import UntranslatableTemplate, to_jinja


def model_files(*, model_id: str, source: str, file: str = "", quantization: str = "") -> ModelFiles:
    """The downloaded model as an engine needs it (`file` or `quantization` choosing among a repository's GGUF
    models); MODEL_NOT_DOWNLOADED when it is not complete on disk."""
    adapter = SOURCES.get(source)
    stored = catalog.downloaded_model(model_id=model_id, source=source) if adapter else None
    if stored is None and adapter is not None:
        try:
            # `llama3.2` is `llama3.2:latest`: the source writes the id the download recorded.
            stored = catalog.downloaded_model(model_id=adapter.canonical_id(model_id), source=source)
        except ValueError:
            stored = None
    if stored is None:
        raise ApiError("MODEL_NOT_DOWNLOADED", f"{model_id} ({source}) has no completed download; download it first",
                       400)
    try:
        model = adapter.model_files(model=stored, file=file, quantization=quantization)
    except RemoteModelNotFound as exc:
        raise ApiError("MODEL_NOT_DOWNLOADED", str(exc), 400) from None
    except ModelFileChoiceError as exc:
        raise ApiError(exc.code, f"{model_id}: {exc}", 400, {"choices": exc.choices}) from None
    if model.go_chat_template and not gguf_shape(model.path).get("chat_template"):
        try:
            model.chat_template_file = _template_config(stored.storage_path, model.go_chat_template, model.path)
        except UntranslatableTemplate as exc:
            model.chat_template_problem = (f"its Ollama template uses {exc}, which cannot be converted, and the GGUF "
                                           "has no chat template of its own")
    return model


def memory_needed(model: ModelFiles, max_model_len: int | None) -> int:
    """Weights plus a KV cache for `max_model_len` tokens (fp16), from the model's shape where we know it."""
    context = max_model_len or 2048
    shape = gguf_shape(model.path) if model.format == "gguf" else model.config
    layers = shape.get("num_hidden_layers") or 0
    hidden = shape.get("hidden_size") or 0
    heads = shape.get("num_attention_heads") or 1
    kv_heads = shape.get("num_key_value_heads") or heads
    kv_cache = 2 * layers * context * (hidden * kv_heads // max(heads, 1)) * 2
    return int(model.weights_bytes * 1.1) + kv_cache


def gguf_shape(path: Path) -> dict:
    """Layer count, widths and chat template from a GGUF header; nothing when it cannot be read."""
    try:
        metadata = read_metadata(path)
    except (OSError, GGUFError):
        return {}
    arch = metadata.get("general.architecture") or ""
    return {"architecture": arch, "num_hidden_layers": metadata.get(f"{arch}.block_count"),
            "hidden_size": metadata.get(f"{arch}.embedding_length"),
            "num_attention_heads": metadata.get(f"{arch}.attention.head_count"),
            "num_key_value_heads": metadata.get(f"{arch}.attention.head_count_kv"),
            "context_length": metadata.get(f"{arch}.context_length"),
            "chat_template": bool(metadata.get("tokenizer.chat_template"))}


def special_tokens(path: Path) -> tuple[str, str]:
    """The texts of a GGUF's own BOS and EOS tokens (empty where its header does not name them)."""
    try:
        ids = read_metadata(path)
        wanted = {ids.get("tokenizer.ggml.bos_token_id"), ids.get("tokenizer.ggml.eos_token_id")} - {None}
        texts = read_metadata(path, token_ids=wanted).get("tokenizer.ggml.tokens") or {}
    except (OSError, GGUFError):
        return "", ""
    return (texts.get(ids.get("tokenizer.ggml.bos_token_id"), ""),
            texts.get(ids.get("tokenizer.ggml.eos_token_id"), ""))


def _template_config(storage_path: str, go_template: str, gguf: Path) -> Path:
    """A Go chat template as a tokenizer_config.json that llama-cpp-python's server reads, with the GGUF's own
    BOS and EOS tokens (UntranslatableTemplate when it cannot be converted)."""
    jinja = to_jinja(go_template)
    bos, eos = special_tokens(gguf)
    name = hashlib.sha1(f"{storage_path}\0{go_template}".encode()).hexdigest()[:16]
    path = settings.DATA_DIR / "engines" / f"{name}.tokenizer_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"chat_template": jinja, "bos_token": bos, "eos_token": eos}))
    return path


def chat_template_problem(model: ModelFiles) -> str:
    """Why the engine cannot turn messages into a prompt (no template in the GGUF, the tokenizer config or a
    convertible Ollama template), or "" when it can."""
    if model.chat_template_file:
        return ""
    if model.chat_template_problem:
        return model.chat_template_problem
    if model.format == "gguf":
        # A header that cannot be read: let the engine decide.
        return "" if gguf_shape(model.path).get("chat_template", True) else "the GGUF has no chat template"
    if (model.path / "chat_template.jinja").exists():
        return ""
    try:
        if json.loads((model.path / "tokenizer_config.json").read_text()).get("chat_template"):
            return ""
    except (OSError, ValueError):
        pass
    return "its tokenizer config has no chat template"


