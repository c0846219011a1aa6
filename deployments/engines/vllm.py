"""vLLM's OpenAI-compatible server (`vllm serve`), for Hugging Face models on NVIDIA GPUs."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from deployments.engines import Engine, Launch, LaunchRequest, ModelFiles


def _cli() -> str:
    beside_python = Path(sys.executable).with_name("vllm")
    return str(beside_python) if beside_python.exists() else (shutil.which("vllm") or "vllm")


def missing(gpu: bool) -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "pip install -r requirements-gpu.txt (vllm)"
    if not gpu:
        return "an NVIDIA GPU with its driver (vLLM does not run on this machine's CPU here)"
    return None


def launch(model: ModelFiles, request: LaunchRequest) -> Launch:
    argv = [
        _cli(), "serve", str(model.path),
        # Without --host vLLM listens on every interface.
        "--host", request.host,
        "--port", str(request.port),
        "--served-model-name", request.served_name,
        "--gpu-memory-utilization", str(request.gpu_memory_utilization),
        "--tensor-parallel-size", str(request.tensor_parallel_size),
        "--dtype", "auto",
    ]
    if request.pipeline_parallel_size > 1:
        argv += ["--pipeline-parallel-size", str(request.pipeline_parallel_size)]
    if request.distributed:
        # More GPUs than one node has: vLLM's Ray executor places its workers on the cluster it is started in
        # (RAY_ADDRESS), in a placement group of its own, its first bundle on this node.
        argv += ["--distributed-executor-backend", "ray"]
    if request.max_model_len:
        argv += ["--max-model-len", str(request.max_model_len)]
    if request.task == "embed":
        # The pooling runner (vLLM ≥ 0.10.1), a generative architecture converted to an embedding model.
        argv += ["--runner", "pooling", "--convert", "embed"]
    # The model is on disk: the engine never asks a hub (the source's env says where its cache is).
    env = {**model.env, "HF_HUB_OFFLINE": "1"}
    return Launch(argv=argv, env=env, probe_path="/health", model_name=request.served_name)


ENGINE = Engine(
    name="vllm", formats=("safetensors",), missing=missing, launch=launch, package="vllm", needs_gpu=True,
    tasks=("generate", "embed"), stream_usage="on_request", gpu_use="tensor_parallel",
    metrics_path="/metrics",
    owned_flags=("--host", "--port", "--served-model-name", "--api-key", "--distributed-executor-backend"),
    options=(("--max-num-seqs N", "sequences batched at once"), ("--quantization NAME", "e.g. awq, gptq, fp8"),
             ("--enforce-eager", "no CUDA graphs (less memory, slower)"), ("--kv-cache-dtype NAME", "e.g. fp8"),
             ("--enable-prefix-caching", "reuse the KV cache of shared prompt prefixes"),
             ("--max-num-batched-tokens N", "tokens per scheduler step")),
)
