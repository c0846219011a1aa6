"""Engine adapters: one module per inference engine, each exposing `ENGINE`.

An adapter knows which model formats it serves, whether it is installed (and what to
install if not), the argv and environment that start it, and the path that answers once
the model is loaded. It takes the model as its source hands it on (`ModelFiles`, whose `env`
the engine's environment carries). Adding an engine is adding a module here.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Callable

from catalog.sources import ModelFiles
from core.plugins import discover


@dataclass
class LaunchRequest:
    host: str
    port: int
    served_name: str
    max_model_len: int | None
    gpu_memory_utilization: float
    tensor_parallel_size: int
    gpu: bool
    task: str = "generate"  # or "embed": the engine serves /v1/embeddings
    pipeline_parallel_size: int = 1
    distributed: bool = False  # its GPUs span several nodes of a Ray cluster (vLLM's Ray executor)


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
    package: str  # the distribution whose version is the engine's
    # Flags the service sets itself (a deployment's engine_args may not): where it listens, what it serves.
    owned_flags: tuple[str, ...] = ()
    # Flags operators often pass through engine_args, with what they do (shown by GET /api/engines).
    options: tuple[tuple[str, str], ...] = ()
    needs_gpu: bool = False
    tasks: tuple[str, ...] = ("generate",)  # what a deployment on it may be started for
    # GPUs a deployment takes by default: "none", "one" (one when the machine has any: llama.cpp offloads to it),
    # or "tensor_parallel" (tensor_parallel_size of them, each reserved up to gpu_memory_utilization: vLLM).
    gpu_use: str = "none"
    # Usage in a stream: "always" (on its last chunk), "on_request" (a last chunk with `stream_options.include_usage`)
    # or "never"; then the proxy counts the streamed text chunks, and asks for the prompt's tokens with the same
    # request unstreamed for one token (its usage counts the chat template's tokens too).
    stream_usage: str = "never"
    metrics_path: str = ""  # where the engine serves Prometheus metrics of its own, if it does

    @property
    def usage_counting(self) -> str:
        """How a deployment on this engine has its tokens counted, in words (the deployment shows it)."""
        if self.stream_usage != "never":
            return "the engine's own counts"
        return ("the engine's own counts; in streams, which carry none, completion tokens are the streamed text "
                "chunks and prompt tokens the engine's count for the same request unstreamed (chat template "
                "included)")

    def version(self) -> str | None:
        try:
            return metadata.version(self.package)
        except metadata.PackageNotFoundError:
            return None

    def default_gpu_count(self, tensor_parallel_size: int, gpus_here: int, pipeline_parallel_size: int = 1) -> int:
        if self.gpu_use == "tensor_parallel":
            return tensor_parallel_size * pipeline_parallel_size
        return 1 if self.gpu_use == "one" and gpus_here else 0

    def owns(self, flag: str) -> bool:
        """Whether `--flag` or `--flag=value` is one the service sets (`-`/`_` spellings alike)."""
        name = flag.split("=", 1)[0].replace("_", "-")
        return name in {owned.replace("_", "-") for owned in self.owned_flags}


ENGINES: dict[str, Engine] = discover(__name__, __path__, "ENGINE", Engine)


def choose(model: ModelFiles, requested: str | None, gpu: bool) -> Engine:
    """The requested engine, else by format and hardware: GGUF → llama.cpp; others → vLLM on GPU, transformers on CPU."""
    if requested:
        return ENGINES[requested]
    if model.format == "gguf":
        return ENGINES["llama.cpp"]
    return ENGINES["vllm"] if gpu else ENGINES["transformers"]
