"""Deployment business logic: choose an engine, check the request, start, watch, restart and stop engine processes.

Each engine runs in a process group of its own (it outlives the web server and the workers
on purpose) and writes to a log file per deployment. The `serve` process calls
`supervise()` every second: it promotes `starting` to `running` when the engine's probe
answers, notices crashes, restarts per the restart policy with exponential backoff, and
rotates logs. A restarted service finds its engines again by pid and process start time.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from deployments.engines import ENGINES, Engine, Launch, LaunchRequest, ModelFiles, choose
from deployments.gguf_header import GGUFError, read_metadata
from deployments.models import Deployment, DeploymentStatus, RestartPolicy
from deployments.ollama_template import to_jinja
from downloads.models import DownloadStatus, DownloadTask
from llm_manager.api import ApiError
from llm_manager.system.services import gpu_stats

logger = logging.getLogger(__name__)

ACTIVE = (DeploymentStatus.STARTING, DeploymentStatus.RUNNING, DeploymentStatus.STOPPING)
PROBE_TIMEOUT = 2.0
READY_POLL_SECONDS = 0.05
ERROR_LOG_LINES = 20


# --- The model on disk ---------------------------------------------------------------------------


def model_files(model_id: str, source: str) -> ModelFiles:
    """The completed download of a model, as an engine needs it; MODEL_NOT_DOWNLOADED otherwise."""
    task = DownloadTask.objects.filter(model_id=model_id, source=source, status=DownloadStatus.COMPLETED).order_by(
        "-completed_at").first()
    if task is None and source == "ollama" and ":" not in model_id:
        task = DownloadTask.objects.filter(model_id=f"{model_id}:latest", source=source,
                                           status=DownloadStatus.COMPLETED).first()
    if task is None:
        raise ApiError("MODEL_NOT_DOWNLOADED", f"{model_id} ({source}) has no completed download; download it first",
                       400)
    files = list(task.files.all())
    if source == "ollama":
        model_layer = next((f for f in files if f.media_type == "application/vnd.ollama.image.model"), None)
        if model_layer is None:
            raise ApiError("MODEL_NOT_DOWNLOADED", f"{model_id} has no model layer", 400)
        template = next((f for f in files if f.media_type == "application/vnd.ollama.image.template"), None)
        model = ModelFiles(model_id=task.model_id, source=source, format="gguf", path=Path(model_layer.destination),
                           weights_bytes=model_layer.size,
                           chat_template=Path(template.destination).read_text(errors="replace") if template else "")
        if model.chat_template and not gguf_shape(model.path).get("chat_template"):
            model.chat_template_file = _ollama_template_config(task.id, model.chat_template)
        return model
    snapshot = Path(task.storage_path) / "snapshots" / task.commit
    ggufs = sorted((f for f in files if f.path.lower().endswith(".gguf")), key=lambda f: f.size)
    if ggufs:
        return ModelFiles(model_id=task.model_id, source=source, format="gguf", path=snapshot / ggufs[0].path,
                          weights_bytes=ggufs[0].size)
    config_path = snapshot / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    weights = sum(f.size for f in files if f.path.endswith((".safetensors", ".bin", ".pt")))
    return ModelFiles(model_id=task.model_id, source=source, format="safetensors", path=snapshot,
                      weights_bytes=weights, config=config)


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


def _ollama_template_config(task_id: str, go_template: str) -> Path | None:
    """Ollama's template as a tokenizer_config.json that llama-cpp-python's server reads; None if not convertible."""
    jinja = to_jinja(go_template)
    if jinja is None:
        return None
    path = settings.DATA_DIR / "engines" / f"{task_id}.tokenizer_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"chat_template": jinja, "bos_token": "<s>", "eos_token": "</s>"}))
    return path


def has_chat_template(model: ModelFiles) -> bool:
    """Whether the engine can turn messages into a prompt: a template in the GGUF or the tokenizer config."""
    if model.chat_template_file:
        return True
    if model.format == "gguf":
        return gguf_shape(model.path).get("chat_template", True)  # cannot tell: let the engine decide
    tokenizer_config = model.path / "tokenizer_config.json"
    if (model.path / "chat_template.jinja").exists():
        return True
    try:
        return bool(json.loads(tokenizer_config.read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


# --- Ports and processes -------------------------------------------------------------------------


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def allocate_port() -> int:
    taken = set(Deployment.objects.filter(status__in=ACTIVE).values_list("port", flat=True))
    low, high = settings.ENGINE_PORT_RANGE
    for port in range(low, high + 1):
        if port not in taken and port_free(port):
            return port
    raise ApiError("PORT_IN_USE", f"No free port in {low}-{high}", 409)


def log_path(deployment: Deployment) -> Path:
    return settings.LOGS_DIR / "deployments" / f"{deployment.id}.log"


def process_alive(deployment: Deployment) -> bool:
    """Is the deployment's own process (same pid and start time) alive?"""
    if not deployment.pid:
        return False
    try:
        process = psutil.Process(deployment.pid)
        started = deployment.options.get("pid_started")
        return process.status() != psutil.STATUS_ZOMBIE and (started is None or abs(process.create_time() - started) < 1)
    except psutil.Error:
        return False


def spawn(deployment: Deployment) -> None:
    """Start the engine in its own process group, its output appended to the deployment's log."""
    model = model_files(deployment.model_id, deployment.model_source)
    launch = _launch(deployment, model)
    path = log_path(deployment)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as log:
        log.write(f"\n--- {timezone.now().isoformat()} starting: {' '.join(launch.argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(launch.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **launch.env}, cwd=settings.DATA_DIR, start_new_session=True)
    deployment.pid = process.pid
    deployment.log_path = str(path)
    deployment.status = DeploymentStatus.STARTING
    deployment.error = ""
    deployment.started_at = None
    deployment.stopped_at = None
    deployment.options = {**deployment.options, "pid_started": psutil.Process(process.pid).create_time(),
                          "spawned_at": time.time(), "probe_path": launch.probe_path, "argv": launch.argv,
                          "engine_model": launch.model_name}
    deployment.options.pop("restart_at", None)
    deployment.save()
    threading.Thread(target=_watch, args=(process, deployment.id), daemon=True, name=f"watch-{deployment.id}").start()


def _watch(process: subprocess.Popen, deployment_id: str) -> None:
    """From the process that started the engine: promote it the moment it is ready, notice the moment it exits
    (and reap it, so it never lingers as a zombie). `supervise()` does the same, a second at a time, for engines
    whose starter is gone."""
    try:
        while process.poll() is None:
            deployment = Deployment.objects.filter(id=deployment_id, pid=process.pid).first()
            if deployment is None or deployment.status != DeploymentStatus.STARTING:
                break
            if probe(deployment)[0]:
                _promote(deployment)
                break
            time.sleep(READY_POLL_SECONDS)
        process.wait()
        exited = Deployment.objects.filter(id=deployment_id, pid=process.pid,
                                           status__in=[DeploymentStatus.STARTING, DeploymentStatus.RUNNING]).first()
        if exited is not None:
            _failed(exited, f"the engine process exited with status {process.returncode}")
    except Exception:
        logger.exception("watching %s failed", deployment_id)
    finally:
        close_old_connections()


def _promote(deployment: Deployment) -> None:
    Deployment.objects.filter(id=deployment.id, pid=deployment.pid, status=DeploymentStatus.STARTING).update(
        status=DeploymentStatus.RUNNING, started_at=timezone.now(), updated_at=timezone.now())


def _launch(deployment: Deployment, model: ModelFiles) -> Launch:
    engine = ENGINES[deployment.engine]
    request = LaunchRequest(host=deployment.host, port=deployment.port, served_name=deployment.name or deployment.id,
                            max_model_len=deployment.max_model_len,
                            gpu_memory_utilization=deployment.gpu_memory_utilization,
                            tensor_parallel_size=int(deployment.options.get("tensor_parallel_size", 1)),
                            gpu=bool(gpu_stats()))
    return engine.launch(model, request)


def terminate(deployment: Deployment, grace: float | None = None) -> None:
    """SIGTERM to the engine's process group, SIGKILL after the grace period."""
    if not deployment.pid or not process_alive(deployment):
        return
    grace = settings.ENGINE_STOP_GRACE if grace is None else grace
    try:
        os.killpg(deployment.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and process_alive(deployment):
        time.sleep(0.1)
    try:
        os.killpg(deployment.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- API operations ------------------------------------------------------------------------------


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


def _memory(model: ModelFiles, chosen: Engine, gpus: list[dict], max_model_len: int | None,
            gpu_memory_utilization: float) -> tuple[int, int]:
    """(bytes the model needs, bytes free for it): GPU memory for GPU engines, else the machine's."""
    available = (sum(g["memory_free_gb"] for g in gpus) * 1024**3 * gpu_memory_utilization if chosen.needs_gpu
                 else psutil.virtual_memory().available)
    return memory_needed(model, max_model_len), int(available)


def memory_estimate(model_id: str, model_source: str, engine: str | None = None, max_model_len: int | None = None,
                    gpu_memory_utilization: float = 0.9) -> dict:
    """What starting this deployment would need, before starting it (the console shows it on its form)."""
    gpus = gpu_stats()
    model = model_files(model_id, model_source)
    chosen = _engine_for(model, engine, gpus)
    required, available = _memory(model, chosen, gpus, max_model_len, gpu_memory_utilization)
    return {"engine": chosen.name, "format": model.format, "required_bytes": required, "available_bytes": available,
            "fits": required <= available}


def start_deployment(model_id: str, model_source: str, port: int | None = None, gpu_memory_utilization: float = 0.9,
                     max_model_len: int | None = None, engine: str | None = None, name: str = "",
                     restart_policy: str = RestartPolicy.ON_FAILURE, tensor_parallel_size: int = 1,
                     force: bool = False) -> Deployment:
    model = model_files(model_id, model_source)
    gpus = gpu_stats()
    chosen = _engine_for(model, engine, gpus)
    if port is not None and not port_free(port):
        raise ApiError("PORT_IN_USE", f"Port {port} is in use", 409)
    required, available = _memory(model, chosen, gpus, max_model_len, gpu_memory_utilization)
    if required > available and not force:
        raise ApiError("INSUFFICIENT_MEMORY", f"{model_id} needs about {required} bytes; {available} are free "
                       "(send force: true to start anyway)", 409,
                       {"required_bytes": required, "available_bytes": available})
    deployment = Deployment.objects.create(
        name=name or "", model_id=model.model_id, model_source=model_source, engine=chosen.name,
        port=port or allocate_port(), gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
        restart_policy=restart_policy, options={"tensor_parallel_size": tensor_parallel_size,
                                                "memory_required_bytes": required,
                                                "chat_template": has_chat_template(model)})
    if not deployment.name:
        deployment.name = deployment.id
    spawn(deployment)
    return deployment


def get_deployment(deployment_id: str) -> Deployment:
    deployment = Deployment.objects.filter(id=deployment_id).first()
    if deployment is None:
        raise ApiError("DEPLOYMENT_NOT_FOUND", f"No deployment {deployment_id}", 404)
    return deployment


def stop_deployment(deployment_id: str) -> Deployment:
    deployment = get_deployment(deployment_id)
    if deployment.status not in (DeploymentStatus.STARTING, DeploymentStatus.RUNNING, DeploymentStatus.ERROR):
        raise ApiError("INVALID_ACTION", f"Cannot stop a deployment that is {deployment.status}", 400)
    deployment.status = DeploymentStatus.STOPPING
    deployment.save(update_fields=["status", "updated_at"])
    terminate(deployment)
    deployment.status, deployment.pid, deployment.stopped_at = DeploymentStatus.STOPPED, None, timezone.now()
    deployment.options.pop("restart_at", None)
    deployment.save()
    return deployment


def restart_deployment(deployment_id: str) -> Deployment:
    deployment = get_deployment(deployment_id)
    if deployment.status == DeploymentStatus.STOPPING:
        raise ApiError("INVALID_ACTION", "The deployment is stopping", 400)
    Deployment.objects.filter(id=deployment.id).update(status=DeploymentStatus.STOPPING)  # its exit is no crash
    terminate(deployment)
    spawn(deployment)
    return deployment


def delete_deployment(deployment_id: str, delete_logs: bool) -> dict:
    deployment = get_deployment(deployment_id)
    terminate(deployment)
    deployment.delete()
    if delete_logs:
        for path in log_path(deployment).parent.glob(f"{deployment.id}.log*"):
            path.unlink(missing_ok=True)
    return {"deployment_id": deployment_id, "logs_deleted": delete_logs}


def tail_lines(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a file, read backwards in blocks (never the whole file)."""
    if not path.exists():
        return []
    block, data = 64 * 1024, b""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        position = handle.tell()
        while position > 0 and data.count(b"\n") <= lines:
            step = min(block, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    return [line.decode(errors="replace") for line in data.splitlines()[-lines:]]


def probe(deployment: Deployment) -> tuple[bool, float | None, str]:
    """(ready, latency in ms, detail) of the engine's readiness path."""
    path = deployment.options.get("probe_path", "/v1/models")
    started = time.perf_counter()
    try:
        response = httpx.get(f"http://{deployment.host}:{deployment.port}{path}", timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        return False, None, f"{type(exc).__name__}"
    latency = round((time.perf_counter() - started) * 1000, 1)
    return response.status_code == 200, latency, f"HTTP {response.status_code}"


def health(deployment: Deployment) -> dict:
    alive = process_alive(deployment)
    ready, latency, detail = probe(deployment) if alive else (False, None, "process not running")
    return {"deployment_id": deployment.id, "status": deployment.status, "process_alive": alive, "pid": deployment.pid,
            "probe": {"ok": ready, "latency_ms": latency, "detail": detail, "path": deployment.options.get("probe_path")},
            "uptime_seconds": uptime(deployment), "restart_count": deployment.restart_count,
            "healthy": alive and ready and deployment.status == DeploymentStatus.RUNNING}


def uptime(deployment: Deployment) -> float | None:
    if deployment.status != DeploymentStatus.RUNNING or not deployment.started_at:
        return None
    return round((timezone.now() - deployment.started_at).total_seconds(), 1)


def model_info(deployment: Deployment) -> dict:
    engine_models = None
    if deployment.status == DeploymentStatus.RUNNING:
        try:
            engine_models = httpx.get(f"http://{deployment.host}:{deployment.port}/v1/models", timeout=5).json()
        except (httpx.HTTPError, ValueError) as exc:
            engine_models = {"error": str(exc)}
    model = model_files(deployment.model_id, deployment.model_source)
    shape = gguf_shape(model.path) if model.format == "gguf" else model.config
    return {"deployment_id": deployment.id, "model_id": deployment.model_id, "source": deployment.model_source,
            "engine": deployment.engine, "engine_models": engine_models, "format": model.format,
            "path": str(model.path), "weights_bytes": model.weights_bytes,
            "architecture": shape.get("architecture") or (shape.get("architectures") or [None])[0],
            "context_length": shape.get("context_length") or shape.get("max_position_embeddings"),
            "max_model_len": deployment.max_model_len, "layers": shape.get("num_hidden_layers"),
            "hidden_size": shape.get("hidden_size"), "has_ollama_template": bool(model.chat_template)}


# --- Supervision ---------------------------------------------------------------------------------


def supervise() -> None:
    """One round of watching every deployment that should be up; the `serve` process calls it every second."""
    for deployment in Deployment.objects.filter(status__in=[DeploymentStatus.STARTING, DeploymentStatus.RUNNING,
                                                            DeploymentStatus.ERROR]):
        try:
            _supervise_one(deployment)
        except Exception:
            logger.exception("supervising %s failed", deployment.id)
        rotate_log(deployment)


def _supervise_one(deployment: Deployment) -> None:
    if deployment.status == DeploymentStatus.ERROR:
        restart_at = deployment.options.get("restart_at")
        if restart_at and time.time() >= restart_at:
            deployment.restart_count += 1
            logger.info("restarting %s (restart %d)", deployment.id, deployment.restart_count)
            spawn(deployment)
        return
    if not process_alive(deployment):
        _failed(deployment, "the engine process exited")
        return
    if deployment.status == DeploymentStatus.STARTING:
        if probe(deployment)[0]:
            _promote(deployment)
        elif time.time() - deployment.options.get("spawned_at", time.time()) > settings.ENGINE_READY_TIMEOUT:
            terminate(deployment, grace=2)
            _failed(deployment, f"the engine was not ready within {settings.ENGINE_READY_TIMEOUT:.0f} s")


def _failed(deployment: Deployment, reason: str) -> None:
    """Mark the deployment `error` with the log's last lines, and schedule a restart if its policy allows.

    Only the first to notice a given process's end writes (the starter's watcher or the supervisor)."""
    last_lines = "\n".join(tail_lines(Path(deployment.log_path), ERROR_LOG_LINES)) if deployment.log_path else ""
    options = dict(deployment.options)
    policy = deployment.restart_policy
    if policy == RestartPolicy.ALWAYS or (policy == RestartPolicy.ON_FAILURE
                                          and deployment.restart_count < deployment.max_restarts):
        options["restart_at"] = time.time() + min(60, 2 ** deployment.restart_count)
    Deployment.objects.filter(id=deployment.id, pid=deployment.pid,
                              status__in=[DeploymentStatus.STARTING, DeploymentStatus.RUNNING]).update(
        status=DeploymentStatus.ERROR, pid=None, error=f"{reason}\n{last_lines}".strip(), options=options,
        updated_at=timezone.now())


def rotate_log(deployment: Deployment) -> None:
    """copytruncate: the engine keeps its append-mode descriptor, the old lines move to .1 … .3."""
    if not deployment.log_path:
        return
    path = Path(deployment.log_path)
    try:
        if path.stat().st_size <= settings.ENGINE_LOG_MAX_BYTES:
            return
    except FileNotFoundError:
        return
    for index in range(settings.ENGINE_LOG_BACKUPS - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{index + 1}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    os.truncate(path, 0)
