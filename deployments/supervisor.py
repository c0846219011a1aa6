"""The engines' processes: spawn, watch, probe, terminate, supervise with restarts, rotate logs.

Each engine runs in a process group of its own (it outlives the web server and the workers on
purpose) and writes to a log file per deployment. The worker cluster's caretaker (system.caretaker) calls
`supervise()` every second: it promotes `starting` to `running` when the engine's probe answers, notices crashes,
restarts per the restart policy with exponential backoff, and rotates logs. A restarted service
finds its engines again by pid and process start time.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx
import psutil
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from catalog.sources import ModelFiles
from core.api import ApiError
from core.gpus import gpu_stats
from core.logfiles import tail_lines
from core.logs import log_context
from deployments.engine_actor import port_free
from deployments.engines import ENGINES, Engine, Launch, LaunchRequest
from deployments.models import Deployment, DeploymentStatus, RestartPolicy
from deployments.placement import Gpu, PlacementError, place
from deployments.resolution import memory_needed, model_files

logger = logging.getLogger(__name__)

ACTIVE = (DeploymentStatus.STARTING, DeploymentStatus.RUNNING, DeploymentStatus.STOPPING)
PROBE_TIMEOUT = 2.0
READY_POLL_SECONDS = 0.05
ERROR_LOG_LINES = 20


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


@dataclass
class Admission:
    """Where a new deployment goes, decided before it is recorded."""

    gpu_ids: list[int]  # the GPUs here; on a cluster Ray assigns them on the node, so none yet
    gpu_count: int
    node: str  # the cluster node; "" for this machine
    required_bytes: int
    available_bytes: int
    fit: dict = field(default_factory=dict)  # what a GPU must have free: placement's reserve_fraction, bytes_per_gpu
    spread: list[tuple[str, int]] = field(default_factory=list)  # over several nodes: (node, GPUs) each


class LocalHost:
    """Engines as process groups of this machine (the default; deployments.cluster.RayHost is the other)."""

    def gpus(self) -> list[dict]:
        return gpu_stats()

    def admit(self, *, model: ModelFiles, engine: Engine, gpus: list[dict], max_model_len: int | None,
              gpu_memory_utilization: float, tensor_parallel_size: int, pipeline_parallel_size: int,
              gpu_ids: list[int] | None, gpu_count: int | None, node: str | None, port: int | None,
              force: bool) -> Admission:
        """The GPUs it takes, placed by deployments.placement (INSUFFICIENT_GPU_MEMORY, unless `force`); on none,
        the machine's memory must hold it (INSUFFICIENT_MEMORY, unless `force`)."""
        if node:
            raise ApiError("VALIDATION_ERROR", "node: this service runs no cluster (LLM_MANAGER_RAY_ADDRESS is "
                           "unset): its deployments run on this machine", 400)
        if port is not None and not port_free(port):
            raise ApiError("PORT_IN_USE", f"Port {port} is in use", 409)
        required = memory_needed(model, max_model_len)
        count = len(gpu_ids) if gpu_ids else (
            gpu_count if gpu_count is not None else engine.default_gpu_count(tensor_parallel_size, len(gpus),
                                                                             pipeline_parallel_size))
        reserve = gpu_memory_utilization if engine.gpu_use == "tensor_parallel" else 0.0
        inventory = [Gpu(index=g["index"], name=g["name"], total_bytes=g["memory_total_bytes"],
                         free_bytes=g["memory_free_bytes"]) for g in gpus]
        try:
            placed = place(inventory, count=count, requested=gpu_ids, reserve_fraction=0.0 if force else reserve,
                           bytes_per_gpu=0 if force else required // max(count, 1))
        except PlacementError as exc:
            raise ApiError(exc.code, exc.message + ("" if exc.code != "INSUFFICIENT_GPU_MEMORY" else
                                                    " (send force: true to start anyway)"), exc.http_status,
                           exc.details) from None
        if placed:
            available = sum(g["memory_free_bytes"] for g in gpus if g["index"] in placed)
        else:
            available = int(psutil.virtual_memory().available)
            if required > available and not force:
                raise ApiError("INSUFFICIENT_MEMORY", f"{model.model_id} needs about {required} bytes; {available} "
                               "are free (send force: true to start anyway)", 409,
                               {"required_bytes": required, "available_bytes": available})
        return Admission(gpu_ids=placed, gpu_count=len(placed), node="", required_bytes=required,
                         available_bytes=available)

    def start(self, deployment: Deployment,
              launch_for: Callable[[Deployment], Launch]) -> tuple[Launch, subprocess.Popen]:
        """Start the engine here; what started it, and its process."""
        if deployment.port is None:
            deployment.port = allocate_port()
        launch = launch_for(deployment)
        with open(deployment.log_path, "ab") as log:
            log.write(f"\n--- {timezone.now().isoformat()} starting: {' '.join(launch.argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(launch.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env={**os.environ, **launch.env}, cwd=settings.DATA_DIR,
                                       start_new_session=True)
        deployment.pid = process.pid
        deployment.options = {**deployment.options, "pid_started": psutil.Process(process.pid).create_time(),
                              "spawned_at": time.time()}
        return launch, process

    def adopt_start(self, deployment: Deployment, launch_for: Callable[[Deployment], Launch]) -> None:
        """Nothing: an engine started here needs no follower (the caretaker probes it)."""

    def alive(self, deployment: Deployment) -> bool:
        return process_alive(deployment)

    def why_down(self, deployment: Deployment) -> str:
        return "the engine process exited"

    def stop(self, deployment: Deployment, grace: float) -> None:
        """SIGTERM to the engine's process group, SIGKILL after the grace period."""
        if not deployment.pid or not process_alive(deployment):
            return
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

    def release(self, deployment: Deployment) -> None:
        """Nothing is held here beyond the process."""

    def log_lines(self, deployment: Deployment, lines: int) -> list[str] | None:
        return None  # the log file on this machine is the log

    def nodes(self) -> list[dict]:
        """This machine, the one node engines run on without a cluster."""
        return [self.node("local")]

    def node(self, node_id: str) -> dict:
        if node_id not in ("local", socket.gethostname()):
            raise ApiError("NODE_NOT_FOUND", f"No node {node_id!r}: without a cluster, engines run on this machine "
                           "alone (node `local`)", 404)
        held = Deployment.objects.filter(status__in=ACTIVE)
        by_gpu = {deployment.id: deployment.gpu_ids for deployment in held if deployment.gpu_ids}
        disk = psutil.disk_usage(str(settings.DATA_DIR))
        devices = gpu_stats()
        return {"id": "local", "name": socket.gethostname(), "ray_node_id": None, "address": "127.0.0.1",
                "alive": True, "draining": False, "head": True,
                "gpus": {"total": len(devices), "held": sum(len(ids) for ids in by_gpu.values()),
                         "by_deployment": by_gpu, "devices": devices},
                "cpus": psutil.cpu_count(), "memory_bytes": psutil.virtual_memory().total,
                "disk_free_bytes": disk.free,
                "deployments": [{"id": d.id, "name": d.name, "status": d.status, "gpu_ids": d.gpu_ids,
                                 "port": d.port} for d in held]}

    def drain(self, node_id: str) -> dict:
        self.node(node_id)
        raise ApiError("INVALID_ACTION", "Draining needs a cluster (LLM_MANAGER_RAY_ADDRESS): without one there is "
                       "no other node to move deployments to", 400)

    undrain = drain


@functools.cache
def host() -> LocalHost:
    """Where engines run, chosen once: a Ray cluster's nodes with LLM_MANAGER_RAY_ADDRESS, else this machine."""
    if settings.RAY_ADDRESS:
        from deployments.cluster import RayHost

        return RayHost()
    return LocalHost()


def log_lines(deployment: Deployment, lines: int) -> list[str]:
    """The engine's last log lines: from its host (a cluster node's actor), else from the log file here."""
    found = host().log_lines(deployment, lines)
    return found if found is not None else tail_lines(log_path(deployment), lines)


def spawn(deployment: Deployment) -> None:
    """Start the engine on its host, its output appended to the deployment's log."""
    path = log_path(deployment)
    path.parent.mkdir(parents=True, exist_ok=True)
    deployment.log_path = str(path)
    launch, process = host().start(deployment, launch_of)
    deployment.status = DeploymentStatus.STARTING
    deployment.error = ""
    deployment.started_at = None
    deployment.stopped_at = None
    deployment.stop_reason = ""
    deployment.probe_path, deployment.engine_model = launch.probe_path, launch.model_name
    deployment.options = {**deployment.options, "argv": launch.argv}
    deployment.options.pop("restart_at", None)
    deployment.options.pop("probe_failures", None)
    deployment.save()
    if process is not None:
        threading.Thread(target=_watch, args=(process, deployment.id), daemon=True,
                         name=f"watch-{deployment.id}").start()
    else:
        threading.Thread(target=await_ready, args=(deployment.id, deployment.pid), daemon=True,
                         name=f"ready-{deployment.id}").start()


def _watch(process: subprocess.Popen, deployment_id: str) -> None:
    with log_context(deployment_id=deployment_id):
        _follow(process, deployment_id)


def _follow(process: subprocess.Popen, deployment_id: str) -> None:
    """From the process that started the engine: promote it the moment it is ready, notice the moment it exits
    (and reap it, so it never lingers as a zombie). `supervise()` does the same, a second at a time, for engines
    whose starter is gone."""
    try:
        _promote_when_ready(deployment_id, process.pid, lambda: process.poll() is None)
        process.wait()
        exited = Deployment.objects.filter(id=deployment_id, pid=process.pid,
                                           status__in=[DeploymentStatus.STARTING, DeploymentStatus.RUNNING]).first()
        if exited is not None:
            _failed(exited, f"the engine process exited with status {process.returncode}")
    except Exception:
        logger.exception("watching %s failed", deployment_id)
    finally:
        close_old_connections()


def await_ready(deployment_id: str, pid: int | None) -> None:
    """For an engine on another node (no process here to follow): promote it the moment its probe answers."""
    try:
        deadline = time.monotonic() + settings.ENGINE_READY_TIMEOUT
        _promote_when_ready(deployment_id, pid, lambda: time.monotonic() < deadline)
    except Exception:
        logger.exception("waiting for %s failed", deployment_id)
    finally:
        close_old_connections()


def _promote_when_ready(deployment_id: str, pid: int | None, going_on: Callable[[], bool]) -> None:
    """Promote the deployment the moment its engine's probe answers, while `going_on()` and it is `starting`."""
    while going_on():
        deployment = Deployment.objects.filter(id=deployment_id, pid=pid).first()
        if deployment is None or deployment.status != DeploymentStatus.STARTING:
            return
        if probe(deployment)[0]:
            _promote(deployment)
            return
        time.sleep(READY_POLL_SECONDS)


def _promote(deployment: Deployment) -> None:
    Deployment.objects.filter(id=deployment.id, pid=deployment.pid, status=DeploymentStatus.STARTING).update(
        status=DeploymentStatus.RUNNING, started_at=timezone.now(), updated_at=timezone.now())


def launch_of(deployment: Deployment) -> Launch:
    """The argv and environment that start the deployment's engine where it is placed."""
    return _launch(deployment, model_files(model_id=deployment.model_id, source=deployment.model_source,
                                           file=deployment.model_file))


def _launch(deployment: Deployment, model: ModelFiles) -> Launch:
    engine = ENGINES[deployment.engine]
    request = LaunchRequest(host=deployment.host, port=deployment.port, served_name=deployment.name or deployment.id,
                            max_model_len=deployment.max_model_len,
                            gpu_memory_utilization=deployment.gpu_memory_utilization,
                            tensor_parallel_size=int(deployment.options.get("tensor_parallel_size", 1)),
                            pipeline_parallel_size=int(deployment.options.get("pipeline_parallel_size", 1)),
                            distributed=bool(deployment.options.get("distributed")),
                            gpu=bool(deployment.gpu_ids), task=deployment.task)
    launch = engine.launch(model, request)
    # The operator's flags come last (the engines' parsers let the last one win) and the environment on top; the
    # engine sees exactly the GPUs it was placed on.
    placed = {"CUDA_VISIBLE_DEVICES": ",".join(str(index) for index in deployment.gpu_ids)} if deployment.gpu_ids \
        else {}
    return Launch(argv=[*launch.argv, *deployment.engine_args], env={**launch.env, **deployment.env, **placed},
                  probe_path=launch.probe_path, model_name=launch.model_name)


def terminate(deployment: Deployment, grace: float | None = None) -> None:
    """Stop the engine (SIGTERM, SIGKILL after the grace period) and free what its host held for it."""
    host().stop(deployment, settings.ENGINE_STOP_GRACE if grace is None else grace)
    host().release(deployment)


def probe(deployment: Deployment) -> tuple[bool, float | None, str]:
    """(ready, latency in ms, detail) of the engine's readiness path."""
    path = deployment.probe_path or "/v1/models"
    started = time.perf_counter()
    try:
        response = httpx.get(f"http://{deployment.host}:{deployment.port}{path}", timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        return False, None, f"{type(exc).__name__}"
    latency = round((time.perf_counter() - started) * 1000, 1)
    return response.status_code == 200, latency, f"HTTP {response.status_code}"


def health(deployment: Deployment) -> dict:
    alive = host().alive(deployment)
    ready, latency, detail = probe(deployment) if alive else (False, None, "process not running")
    return {"deployment_id": deployment.id, "status": deployment.status, "process_alive": alive, "pid": deployment.pid,
            "probe": {"ok": ready, "latency_ms": latency, "detail": detail, "path": deployment.probe_path or None},
            "uptime_seconds": uptime(deployment), "restart_count": deployment.restart_count,
            "healthy": alive and ready and deployment.status == DeploymentStatus.RUNNING}


def uptime(deployment: Deployment) -> float | None:
    if deployment.status != DeploymentStatus.RUNNING or not deployment.started_at:
        return None
    return round((timezone.now() - deployment.started_at).total_seconds(), 1)


# --- Supervision ---------------------------------------------------------------------------------


def supervise() -> None:
    """One round of watching every deployment that should be up; the worker cluster's caretaker calls it every second."""
    for deployment in Deployment.objects.filter(status__in=[DeploymentStatus.STARTING, DeploymentStatus.RUNNING,
                                                            DeploymentStatus.ERROR]):
        with log_context(deployment_id=deployment.id):
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
            try:
                spawn(deployment)
            except ApiError as exc:  # nowhere to place it now (a cluster short of a node): try again later
                Deployment.objects.filter(id=deployment.id, status=DeploymentStatus.ERROR).update(
                    restart_count=deployment.restart_count, error=f"{deployment.error}\nrestart "
                    f"{deployment.restart_count} failed: {exc.message}"[-4000:],
                    options={**deployment.options, "restart_at": time.time() + min(60, 2 ** deployment.restart_count)})
        return
    if deployment.status == DeploymentStatus.STARTING and not deployment.log_path:
        # Created, and its starter is still placing it (spawn records it when placed; on Ray that takes seconds):
        # not yet the caretaker's to judge, unless that start was cut off (the service stopped midway).
        if (timezone.now() - deployment.updated_at).total_seconds() > settings.ENGINE_READY_TIMEOUT:
            _failed(deployment, "its start was cut off before the engine was placed")
        return
    if not host().alive(deployment):
        _failed(deployment, host().why_down(deployment))
        return
    if deployment.status == DeploymentStatus.STARTING:
        host().adopt_start(deployment, launch_of)
        if probe(deployment)[0]:
            _promote(deployment)
        elif time.time() - deployment.options.get("spawned_at", time.time()) > settings.ENGINE_READY_TIMEOUT:
            terminate(deployment, grace=2)
            _failed(deployment, f"the engine was not ready within {settings.ENGINE_READY_TIMEOUT:.0f} s")
    elif deployment.status == DeploymentStatus.RUNNING:
        if _idle_for(deployment) > (deployment.idle_timeout or float("inf")):
            _stop_idle(deployment)
            return
        _check_answers(deployment)


def _idle_for(deployment: Deployment) -> float:
    """Seconds since its last request (or since it became ready, if none came since)."""
    moments = [moment for moment in (deployment.last_request_at, deployment.started_at) if moment]
    return (timezone.now() - max(moments)).total_seconds() if moments else 0.0


def _stop_idle(deployment: Deployment) -> None:
    """Stop a deployment nobody called for its idle_timeout, freeing its memory; the next call loads it again."""
    if not Deployment.objects.filter(id=deployment.id, pid=deployment.pid, status=DeploymentStatus.RUNNING).update(
            status=DeploymentStatus.STOPPING, updated_at=timezone.now()):
        return  # changed meanwhile
    logger.info("%s had no request for %d s: stopping it", deployment.id, deployment.idle_timeout)
    terminate(deployment)
    Deployment.objects.filter(id=deployment.id).update(status=DeploymentStatus.STOPPED, pid=None,
                                                       stopped_at=timezone.now(), stop_reason="idle",
                                                       updated_at=timezone.now())


def _check_answers(deployment: Deployment) -> None:
    """An engine alive but not answering (hung, stopped): after ENGINE_PROBE_FAILURES probes in a row it is failed,
    killed, and its restart policy applies."""
    ready, _, detail = probe(deployment)
    before = deployment.options.get("probe_failures", 0)
    failures = 0 if ready else before + 1
    if failures != before:
        Deployment.objects.filter(id=deployment.id, pid=deployment.pid).update(
            options={**deployment.options, "probe_failures": failures})
        deployment.options["probe_failures"] = failures
    if failures >= settings.ENGINE_PROBE_FAILURES:
        _failed(deployment, f"the engine stopped answering its readiness probe ({detail}, {failures} times in a row)")
        terminate(deployment, grace=1)


def _failed(deployment: Deployment, reason: str) -> None:
    """Mark the deployment `error` with the log's last lines, and schedule a restart if its policy allows.

    Only the first to notice a given process's end writes (the starter's watcher or the supervisor)."""
    last_lines = "\n".join(log_lines(deployment, ERROR_LOG_LINES))
    host().release(deployment)
    options = dict(deployment.options)
    policy = deployment.restart_policy
    if policy == RestartPolicy.ALWAYS or (policy == RestartPolicy.ON_FAILURE
                                          and deployment.restart_count < deployment.max_restarts):
        options["restart_at"] = time.time() + min(60, 2 ** deployment.restart_count)
    failed = Deployment.objects.filter(id=deployment.id, pid=deployment.pid,
                                       status__in=[DeploymentStatus.STARTING, DeploymentStatus.RUNNING]).update(
        status=DeploymentStatus.ERROR, pid=None, error=f"{reason}\n{last_lines}".strip(), options=options,
        updated_at=timezone.now())
    if failed:
        logger.warning("deployment %s failed: %s%s", deployment.id, reason,
                       "; restarting it per its policy" if "restart_at" in options else "")


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
