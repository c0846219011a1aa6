"""The public shape of deployments."""

from __future__ import annotations

import re
from typing import Any

from core.api import utc_timestamp
from core.gpus import gpu_stats
from deployments import supervisor
from deployments.engines import ENGINES, Engine
from deployments.models import Deployment

# A secret's name, but not a tokenizer's (`--hf_tokenizer_config_path` is a path, not a token).
SECRET_NAME = re.compile(r"(?i)(key|token(?!izer)|secret|password|passwd|credential)")
MASK = "***"


def masked_env(env: dict[str, str]) -> dict[str, str]:
    """Values of variables whose names look secret are never shown again."""
    return {name: MASK if SECRET_NAME.search(name) else value for name, value in env.items()}


def deployment_to_dict(deployment: Deployment) -> dict[str, Any]:
    usage = getattr(deployment, "usage", None)  # None until the proxy counts a request
    return {
        "deployment_id": deployment.id,
        "name": deployment.name,
        "model_id": deployment.model_id,
        "model_source": deployment.model_source,
        "engine": deployment.engine,
        "status": deployment.status,
        "host": deployment.host,
        "port": deployment.port,
        "gpu_memory_utilization": deployment.gpu_memory_utilization,
        "max_model_len": deployment.max_model_len,
        "restart_policy": deployment.restart_policy,
        "restart_count": deployment.restart_count,
        "pid": deployment.pid,
        "uptime_seconds": supervisor.uptime(deployment),
        "error": deployment.error or None,
        "created_at": utc_timestamp(deployment.created_at),
        "started_at": utc_timestamp(deployment.started_at) if deployment.started_at else None,
        "stopped_at": utc_timestamp(deployment.stopped_at) if deployment.stopped_at else None,
        "task": deployment.task,
        "gpu_ids": deployment.gpu_ids,
        "node": deployment.node or None,
        "idle_timeout": deployment.idle_timeout,
        "last_request_at": utc_timestamp(deployment.last_request_at) if deployment.last_request_at else None,
        "stop_reason": deployment.stop_reason or None,
        "usage_counting": ENGINES[deployment.engine].usage_counting if deployment.engine in ENGINES else None,
        "model_file": deployment.model_file or None,
        "engine_args": deployment.engine_args,
        "env": masked_env(deployment.env),
        # The engine's full command line as last started (secret-looking values masked, --api-key's too).
        "command": masked_argv(deployment.options.get("argv") or []),
        "usage": {"requests": usage.requests, "errors": usage.errors, "prompt_tokens": usage.prompt_tokens,
                  "completion_tokens": usage.completion_tokens} if usage else None,
    }


def masked_argv(argv: list[str]) -> list[str]:
    shown, hide_next = [], False
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if hide_next:
            shown.append(MASK)
        elif "=" in arg and arg.startswith("-") and SECRET_NAME.search(flag):
            shown.append(f"{flag}={MASK}")
        else:
            shown.append(arg)
        hide_next = arg.startswith("-") and "=" not in arg and bool(SECRET_NAME.search(arg))
    return shown


def engine_to_dict(engine: Engine) -> dict[str, Any]:
    gpu = bool(gpu_stats())
    missing = engine.missing(gpu)
    return {"name": engine.name, "formats": list(engine.formats), "needs_gpu": engine.needs_gpu,
            "available": missing is None, "missing": missing, "version": engine.version(),
            "owned_flags": list(engine.owned_flags),
            "options": [{"flag": flag, "help": text} for flag, text in engine.options]}
