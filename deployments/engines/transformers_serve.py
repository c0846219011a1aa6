"""`transformers serve` for Hugging Face safetensors/PyTorch models on a CPU, loaded offline from our cache."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from deployments.engines import Engine, Launch, LaunchRequest, ModelFiles


def _cli() -> str | None:
    beside_python = Path(sys.executable).with_name("transformers")
    return str(beside_python) if beside_python.exists() else shutil.which("transformers")


def missing(gpu: bool) -> str | None:
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None or not _cli():
        return "pip install torch 'transformers[serving]'"
    return None


def launch(model: ModelFiles, request: LaunchRequest) -> Launch:
    argv = [_cli() or "transformers", "serve", str(model.path), "--host", request.host, "--port", str(request.port),
            "--device", "cuda" if request.gpu else "cpu"]
    # The model is on disk: the engine never asks a hub (the source's env says where its cache is).
    env = {**model.env, "HF_HUB_OFFLINE": "1"}
    # The preloaded model answers to its directory, as given; any other name would be fetched from a hub.
    return Launch(argv=argv, env=env, probe_path="/health", model_name=str(model.path))


ENGINE = Engine(
    name="transformers", formats=("safetensors",), missing=missing, launch=launch, package="transformers",
    owned_flags=("--host", "--port", "--device"),
    stream_usage="always",  # transformers serve puts usage on every stream's last chunk
    options=(("--dtype NAME", "e.g. bfloat16, float32"), ("--log-level LEVEL", "the server's log level"),
             ("--trust-remote-code", "run the model repository's own code")),
)
