"""The public shape of deployments."""

from __future__ import annotations

from typing import Any

from core.api import utc_timestamp
from deployments import supervisor
from deployments.models import Deployment


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
        "usage": {"requests": usage.requests, "errors": usage.errors, "prompt_tokens": usage.prompt_tokens,
                  "completion_tokens": usage.completion_tokens} if usage else None,
    }
