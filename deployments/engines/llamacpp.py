"""llama.cpp through llama-cpp-python's OpenAI-compatible server, for GGUF models."""

from __future__ import annotations

import importlib.util
import sys

from deployments.engines import Engine, Launch, LaunchRequest, ModelFiles

DEFAULT_CONTEXT = 2048


def missing(gpu: bool) -> str | None:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("sse_starlette") is None:
        return "pip install 'llama-cpp-python[server]'"
    return None


def launch(model: ModelFiles, request: LaunchRequest) -> Launch:
    argv = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model.path),
        "--model_alias", request.served_name,
        "--host", request.host,
        "--port", str(request.port),
        "--n_ctx", str(request.max_model_len or DEFAULT_CONTEXT),
        # Offload every layer when there is a GPU to offload to.
        "--n_gpu_layers", "-1" if request.gpu else "0",
    ]
    if request.task == "embed":
        argv += ["--embedding", "true"]
    if model.chat_template_file:
        argv += ["--chat_format", "hf-tokenizer-config", "--hf_tokenizer_config_path", str(model.chat_template_file)]
    # No /health here: the port opens once the model is loaded, and /v1/models answers.
    return Launch(argv=argv, env=dict(model.env), probe_path="/v1/models", model_name=request.served_name)


ENGINE = Engine(
    name="llama.cpp", formats=("gguf",), missing=missing, launch=launch, package="llama-cpp-python",
    owned_flags=("--model", "--model_alias", "--host", "--port", "--api_key"), tasks=("generate", "embed"),
    gpu_use="one",
    # llama-cpp-python ignores stream_options: its streams carry no usage. (Its prompt cache makes the proxy's
    # one-token request for the prompt's count re-use the prompt just evaluated.)
    stream_usage="never",
    options=(("--n_gpu_layers N", "layers to offload to the GPU (-1: all)"),
             ("--n_ctx N", "context length (the deployment's max_model_len sets it too)"),
             ("--n_threads N", "CPU threads for generation"), ("--n_batch N", "prompt batch size"),
             ("--chat_format NAME", "chat format, e.g. chatml or chatml-function-calling"),
             ("--embedding true", "serve embeddings"), ("--flash_attn true", "flash attention")),
)
