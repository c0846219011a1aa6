"""Deployment business logic: choose an engine, check the request, start, stop, restart and delete deployments.

The engines' processes are handled by `supervisor`; what a model needs by `resolution`.
"""

from __future__ import annotations

import httpx
import psutil
from django.conf import settings
from django.utils import timezone

from catalog.sources import ModelFiles
from core.api import ApiError
from core.audit import audited
from core.host import gpu_stats
from deployments import supervisor
from deployments.engines import ENGINES, Engine, choose
from deployments.models import Deployment, DeploymentStatus, DeploymentTask, RestartPolicy
from deployments.placement import Gpu, PlacementError, place
from deployments.resolution import chat_template_problem, gguf_shape, memory_needed, model_files
from deployments.selectors import get_deployment


def _engine_for(model: ModelFiles, engine: str | None, gpus: list[dict]) -> Engine:
    """The engine that serves `model` here: the one asked for, or the best for its format and the hardware."""
    if engine and engine not in ENGINES:
        raise ApiError("VALIDATION_ERROR", f"engine: unknown engine {engine!r} (use one of {', '.join(ENGINES)})", 400)
    chosen = choose(model, engine, bool(gpus))
    if model.format not in chosen.formats:
        raise ApiError("VALIDATION_ERROR", f"engine: {chosen.name} does not serve {model.format} models", 400)
    needed = chosen.missing(bool(gpus))
    if needed:
        raise ApiError("ENGINE_UNAVAILABLE", f"{chosen.name} is not available here: {needed}", 400)
    return chosen


def inventory(gpus: list[dict]) -> list[Gpu]:
    return [Gpu(index=g["index"], name=g["name"], total_bytes=g["memory_total_bytes"],
                free_bytes=g["memory_free_bytes"]) for g in gpus]


def _fit(model: ModelFiles, chosen: Engine, gpus: list[dict], *, max_model_len: int | None,
         gpu_memory_utilization: float, tensor_parallel_size: int, gpu_ids: list[int] | None, gpu_count: int | None,
         force: bool) -> tuple[int, int, list[int]]:
    """(bytes the model needs, bytes free for it, the GPUs it takes): on GPUs, placed by deployments.placement
    (INSUFFICIENT_GPU_MEMORY, unless `force`); else in the machine's memory (its fit checked by the caller)."""
    required = memory_needed(model, max_model_len)
    count = len(gpu_ids) if gpu_ids else (
        gpu_count if gpu_count is not None else chosen.default_gpu_count(tensor_parallel_size, len(gpus)))
    reserve = gpu_memory_utilization if chosen.gpu_use == "tensor_parallel" else 0.0
    try:
        placed = place(inventory(gpus), count=count, requested=gpu_ids, reserve_fraction=0.0 if force else reserve,
                       bytes_per_gpu=0 if force else required // max(count, 1))
    except PlacementError as exc:
        raise ApiError(exc.code, exc.message + ("" if exc.code != "INSUFFICIENT_GPU_MEMORY" else
                                                " (send force: true to start anyway)"), exc.http_status,
                       exc.details) from None
    if placed:
        return required, sum(g["memory_free_bytes"] for g in gpus if g["index"] in placed), placed
    return required, int(psutil.virtual_memory().available), []


def memory_estimate(*, model_id: str, model_source: str, engine: str | None = None, max_model_len: int | None = None,
                    gpu_memory_utilization: float = 0.9, file: str = "", quantization: str = "") -> dict:
    """What starting this deployment would need, before starting it (the console shows it on its form)."""
    gpus = gpu_stats()
    model = model_files(model_id=model_id, source=model_source, file=file, quantization=quantization)
    chosen = _engine_for(model, engine, gpus)
    try:
        required, available, placed = _fit(model, chosen, gpus, max_model_len=max_model_len,
                                           gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=1,
                                           gpu_ids=None, gpu_count=None, force=False)
    except ApiError as exc:
        if exc.code != "INSUFFICIENT_GPU_MEMORY":
            raise
        return {"engine": chosen.name, "format": model.format, "fits": False, "gpus": exc.details["gpus"],
                "required_bytes": memory_needed(model, max_model_len), "available_bytes": 0,
                "file": model.file or None, "file_reason": model.file_reason or None}
    return {"engine": chosen.name, "format": model.format, "required_bytes": required, "available_bytes": available,
            "fits": required <= available or bool(placed), "gpu_ids": placed, "file": model.file or None,
            "file_reason": model.file_reason or None}


def check_engine_args(engine: Engine, engine_args: list[str]) -> None:
    """Extra flags start with a flag, and none is one the service sets itself (400 VALIDATION_ERROR naming it)."""
    if engine_args and not engine_args[0].startswith("-"):
        raise ApiError("VALIDATION_ERROR", f"engine_args: {engine_args[0]!r} is not a flag (flags start with -)", 400)
    for arg in engine_args:
        if arg.startswith("-") and engine.owns(arg):
            raise ApiError("VALIDATION_ERROR", f"engine_args: {arg.split('=', 1)[0]} is set by the service for "
                           f"{engine.name} and cannot be passed", 400)


@audited("deployment.start", target="model_id", object_of=lambda result: result.id)
def start_deployment(*, model_id: str, model_source: str, port: int | None = None,
                     gpu_memory_utilization: float = 0.9, max_model_len: int | None = None, engine: str | None = None,
                     name: str = "", restart_policy: str = RestartPolicy.ON_FAILURE, tensor_parallel_size: int = 1,
                     engine_args: list[str] | None = None, env: dict[str, str] | None = None,
                     force: bool = False, file: str = "", quantization: str = "",
                     task: str = DeploymentTask.GENERATE, idle_timeout: int | None = None,
                     gpu_ids: list[int] | None = None, gpu_count: int | None = None) -> Deployment:
    """Start an engine for a downloaded model, on `gpu_ids` (or `gpu_count` GPUs, else the engine's default number)
    chosen by deployments.placement; `idle_timeout` (seconds, else LLM_MANAGER_IDLE_TIMEOUT) stops it after that
    long without a request."""
    model = model_files(model_id=model_id, source=model_source, file=file, quantization=quantization)
    gpus = gpu_stats()
    chosen = _engine_for(model, engine, gpus)
    if task not in chosen.tasks:
        raise ApiError("EMBEDDINGS_NOT_SUPPORTED", f"{chosen.name} cannot serve {model_id} for {task}; engines that "
                       f"can: {', '.join(sorted(e.name for e in ENGINES.values() if task in e.tasks))}", 400)
    check_engine_args(chosen, engine_args or [])
    if port is not None and not supervisor.port_free(port):
        raise ApiError("PORT_IN_USE", f"Port {port} is in use", 409)
    if "CUDA_VISIBLE_DEVICES" in (env or {}):
        raise ApiError("VALIDATION_ERROR", "env: CUDA_VISIBLE_DEVICES is set from the deployment's GPUs; use "
                       "gpu_ids or gpu_count", 400)
    required, available, placed = _fit(model, chosen, gpus, max_model_len=max_model_len,
                                       gpu_memory_utilization=gpu_memory_utilization,
                                       tensor_parallel_size=tensor_parallel_size, gpu_ids=gpu_ids,
                                       gpu_count=gpu_count, force=force)
    if not placed and required > available and not force:
        raise ApiError("INSUFFICIENT_MEMORY", f"{model_id} needs about {required} bytes; {available} are free "
                       "(send force: true to start anyway)", 409,
                       {"required_bytes": required, "available_bytes": available})
    chat_problem = chat_template_problem(model)
    deployment = Deployment.objects.create(
        name=name or "", model_id=model.model_id, model_source=model_source, engine=chosen.name,
        port=port or supervisor.allocate_port(), gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len, restart_policy=restart_policy, supports_chat=not chat_problem,
        chat_problem=chat_problem,
        task=task, idle_timeout=idle_timeout or settings.IDLE_TIMEOUT, gpu_ids=placed, model_file=model.file, model_file_reason=model.file_reason, engine_args=list(engine_args or []), env=dict(env or {}),
        options={"tensor_parallel_size": tensor_parallel_size, "memory_required_bytes": required})
    if not deployment.name:
        deployment.name = deployment.id
    supervisor.spawn(deployment)
    return deployment


@audited("deployment.stop", target="deployment_id")
def stop_deployment(*, deployment_id: str) -> Deployment:
    deployment = get_deployment(deployment_id)
    if deployment.status not in (DeploymentStatus.STARTING, DeploymentStatus.RUNNING, DeploymentStatus.ERROR):
        raise ApiError("INVALID_ACTION", f"Cannot stop a deployment that is {deployment.status}", 400)
    deployment.status = DeploymentStatus.STOPPING
    deployment.save(update_fields=["status", "updated_at"])
    supervisor.terminate(deployment)
    deployment.status, deployment.pid, deployment.stopped_at = DeploymentStatus.STOPPED, None, timezone.now()
    deployment.stop_reason = "requested"
    deployment.options.pop("restart_at", None)
    deployment.save()
    return deployment


@audited("deployment.restart", target="deployment_id")
def restart_deployment(*, deployment_id: str) -> Deployment:
    deployment = get_deployment(deployment_id)
    if deployment.status == DeploymentStatus.STOPPING:
        raise ApiError("INVALID_ACTION", "The deployment is stopping", 400)
    Deployment.objects.filter(id=deployment.id).update(status=DeploymentStatus.STOPPING)  # its exit is no crash
    supervisor.terminate(deployment)
    supervisor.spawn(deployment)
    return deployment


@audited("deployment.delete", target="deployment_id")
def delete_deployment(*, deployment_id: str, delete_logs: bool) -> dict:
    deployment = get_deployment(deployment_id)
    supervisor.terminate(deployment)
    deployment.delete()
    if delete_logs:
        for path in supervisor.log_path(deployment).parent.glob(f"{deployment.id}.log*"):
            path.unlink(missing_ok=True)
    return {"deployment_id": deployment_id, "logs_deleted": delete_logs}


def refuse_removing_models_in_use(*, source: str, model_id: str, **kwargs) -> None:
    """Connected to downloads' `model_files_removing`: the files of a model a deployment runs stay."""
    in_use = Deployment.objects.filter(model_id=model_id, model_source=source).exclude(
        status__in=[DeploymentStatus.STOPPED, DeploymentStatus.ERROR]).first()
    if in_use is not None:
        raise ApiError("MODEL_IN_USE", f"{model_id} is used by deployment {in_use.id}", 409)


def model_info(*, deployment: Deployment) -> dict:
    """The engine's /v1/models answer beside what the model's files say of it."""
    engine_models = None
    if deployment.status == DeploymentStatus.RUNNING:
        try:
            engine_models = httpx.get(f"http://{deployment.host}:{deployment.port}/v1/models", timeout=5).json()
        except (httpx.HTTPError, ValueError) as exc:
            engine_models = {"error": str(exc)}
    model = model_files(model_id=deployment.model_id, source=deployment.model_source, file=deployment.model_file)
    shape = gguf_shape(model.path) if model.format == "gguf" else model.config
    return {"deployment_id": deployment.id, "model_id": deployment.model_id, "source": deployment.model_source,
            "engine": deployment.engine, "engine_models": engine_models, "format": model.format,
            "path": str(model.path), "weights_bytes": model.weights_bytes,
            "file": model.file or None, "file_reason": deployment.model_file_reason or None,
            "architecture": shape.get("architecture") or (shape.get("architectures") or [None])[0],
            "context_length": shape.get("context_length") or shape.get("max_position_embeddings"),
            "max_model_len": deployment.max_model_len, "layers": shape.get("num_hidden_layers"),
            "hidden_size": shape.get("hidden_size"), "has_ollama_template": bool(model.go_chat_template)}
