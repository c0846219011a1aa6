"""Deployment business logic: choose an engine, check the request, start, stop, restart and delete deployments.

The engines' processes are handled by `supervisor`; what a model needs by `resolution`.
"""

from __future__ import annotations

import httpx
from django.conf import settings
from django.utils import timezone

from catalog.sources import ModelFiles
from core.api import ApiError
from core.audit import audited
from deployments import supervisor
from deployments.engines import ENGINES, Engine, choose
from deployments.models import Deployment, DeploymentStatus, DeploymentTask, RestartPolicy
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


def memory_estimate(*, model_id: str, model_source: str, engine: str | None = None, max_model_len: int | None = None,
                    gpu_memory_utilization: float = 0.9, file: str = "", quantization: str = "") -> dict:
    """What starting this deployment would need, before starting it (the console shows it on its form)."""
    host = supervisor.host()
    gpus = host.gpus()
    model = model_files(model_id=model_id, source=model_source, file=file, quantization=quantization)
    chosen = _engine_for(model, engine, gpus)
    described = {"engine": chosen.name, "format": model.format, "file": model.file or None,
                 "file_reason": model.file_reason or None}
    try:
        admission = host.admit(model=model, engine=chosen, gpus=gpus, max_model_len=max_model_len,
                               gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=1,
                               pipeline_parallel_size=1, gpu_ids=None,
                               gpu_count=None, node=None, port=None, force=False)
    except ApiError as exc:
        if exc.code == "INSUFFICIENT_GPU_MEMORY":
            return {**described, "fits": False, "gpus": exc.details.get("gpus", exc.details.get("nodes")),
                    "required_bytes": memory_needed(model, max_model_len), "available_bytes": 0}
        if exc.code == "INSUFFICIENT_MEMORY":
            return {**described, "fits": False, **exc.details}
        raise
    return {**described, "required_bytes": admission.required_bytes, "available_bytes": admission.available_bytes,
            "fits": True, "gpu_ids": admission.gpu_ids}


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
                     pipeline_parallel_size: int = 1,
                     engine_args: list[str] | None = None, env: dict[str, str] | None = None,
                     force: bool = False, file: str = "", quantization: str = "",
                     task: str = DeploymentTask.GENERATE, idle_timeout: int | None = None,
                     gpu_ids: list[int] | None = None, gpu_count: int | None = None,
                     node: str | None = None) -> Deployment:
    """Start an engine for a downloaded model, on `gpu_ids` (or `gpu_count` GPUs, else the engine's default number)
    chosen by deployments.placement; `idle_timeout` (seconds, else LLM_MANAGER_IDLE_TIMEOUT) stops it after that
    long without a request."""
    model = model_files(model_id=model_id, source=model_source, file=file, quantization=quantization)
    host = supervisor.host()
    gpus = host.gpus()
    chosen = _engine_for(model, engine, gpus)
    if task not in chosen.tasks:
        raise ApiError("EMBEDDINGS_NOT_SUPPORTED", f"{chosen.name} cannot serve {model_id} for {task}; engines that "
                       f"can: {', '.join(sorted(e.name for e in ENGINES.values() if task in e.tasks))}", 400)
    check_engine_args(chosen, engine_args or [])
    if "CUDA_VISIBLE_DEVICES" in (env or {}):
        raise ApiError("VALIDATION_ERROR", "env: CUDA_VISIBLE_DEVICES is set from the deployment's GPUs; use "
                       "gpu_ids or gpu_count", 400)
    admission = host.admit(model=model, engine=chosen, gpus=gpus, max_model_len=max_model_len,
                           gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size,
                           pipeline_parallel_size=pipeline_parallel_size,
                           gpu_ids=gpu_ids, gpu_count=gpu_count, node=node, port=port, force=force)
    chat_problem = chat_template_problem(model)
    deployment = Deployment.objects.create(
        name=name or "", model_id=model.model_id, model_source=model_source, engine=chosen.name,
        port=port, gpu_memory_utilization=gpu_memory_utilization, node=admission.node,
        max_model_len=max_model_len, restart_policy=restart_policy, supports_chat=not chat_problem,
        chat_problem=chat_problem,
        task=task, idle_timeout=idle_timeout or settings.IDLE_TIMEOUT, gpu_ids=admission.gpu_ids, model_file=model.file, model_file_reason=model.file_reason, engine_args=list(engine_args or []), env=dict(env or {}),
        options={"tensor_parallel_size": tensor_parallel_size, "pipeline_parallel_size": pipeline_parallel_size,
                 "memory_required_bytes": admission.required_bytes, "distributed": bool(admission.spread),
                 "spread": admission.spread,
                 "gpu_count": admission.gpu_count, "port_requested": port is not None,
                 "fit": admission.fit})
    if not deployment.name:
        deployment.name = deployment.id
    try:
        supervisor.spawn(deployment)
    except ApiError:
        deployment.delete()  # not placed (a cluster that could not take it after all): nothing to keep
        raise
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


@audited("node.drain", target="node_id")
def drain_node(*, node_id: str) -> dict:
    return supervisor.host().drain(node_id)


@audited("node.undrain", target="node_id")
def undrain_node(*, node_id: str) -> dict:
    return supervisor.host().undrain(node_id)
