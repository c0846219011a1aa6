"""Engine adapters: one module per inference engine, each exposing `ENGINE`.

An adapter knows which model formats it serves, whether it is installed (and what to
install if not), the argv and environment that start it, and the path that answers once
the model is loaded. Adding an engine is adding a module here.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class ModelFiles:
    """A downloaded model as an engine needs it."""

    model_id: str
    source: str
    format: str  # "gguf" or "safetensors" (which also covers PyTorch .bin weights)
    path: Path  # the GGUF file, or the snapshot directory
    weights_bytes: int
    chat_template: str = ""  # Ollama's template layer, when there is one
    # A tokenizer_config.json carrying that template as Jinja, for a GGUF that has no template of its own.
    chat_template_file: Path | None = None
    config: dict = field(default_factory=dict)  # config.json of a Hugging Face model


@dataclass
class LaunchRequest:
    host: str
    port: int
    served_name: str
    max_model_len: int | None
    gpu_memory_utilization: float
    tensor_parallel_size: int
    gpu: bool


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    probe_path: str  # answers 200 once the model is loaded
    model_name: str  # what requests to the engine put in `model`


@dataclass(frozen=True)
class Engine:
    name: str
    formats: tuple[str, ...]
    missing: Callable[[bool], str | None]  # (gpu present) → what to install, or None when ready
    launch: Callable[[ModelFiles, LaunchRequest], Launch]
    needs_gpu: bool = False


def _discover() -> dict[str, Engine]:
    engines = {}
    for module_info in pkgutil.iter_modules(__path__):
        engine = getattr(importlib.import_module(f"{__name__}.{module_info.name}"), "ENGINE", None)
        if isinstance(engine, Engine):
            engines[engine.name] = engine
    return engines


ENGINES: dict[str, Engine] = _discover()


def choose(model: ModelFiles, requested: str | None, gpu: bool) -> Engine:
    """The requested engine, else by format and hardware: GGUF → llama.cpp; others → vLLM on GPU, transformers on CPU."""
    if requested:
        return ENGINES[requested]
    if model.format == "gguf":
        return ENGINES["llama.cpp"]
    return ENGINES["vllm"] if gpu else ENGINES["transformers"]
