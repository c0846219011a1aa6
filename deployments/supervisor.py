"""The engines' processes: spawn, watch, probe, terminate, supervise with restarts, rotate logs.

Each engine runs in a process group of its own (it outlives the web server and the workers on
purpose) and writes to a log file per deployment. The worker cluster's caretaker (system.caretaker) calls
`supervise()` every second: it promotes `starting` to `running` when the engine's probe answers, notices crashes,
restarts per the restart policy with exponential backoff, and rotates logs. A restarted service
finds its engines again by pid and process start time.
"""

from __future__ import annotations

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

from catalog.sources import ModelFiles
from core.api import ApiError
from core.logs import log_context
from deployments.engines import ENGINES, Launch, LaunchRequest
from deployments.models import Deployment, DeploymentStatus, RestartPolicy
from deployments.resolution import model_files

logger = logging.getLogger(__name__)

ACTIVE = (DeploymentStatus.STARTING, DeploymentStatus.RUNNING, DeploymentStatus.STOPPING)
PROBE_TIMEOUT = 2.0
READY_POLL_SECONDS = 0.05
ERROR_LOG_LINES = 20


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
    model = model_files(model_id=deployment.model_id, source=deployment.model_source, file=deployment.model_file)
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
    deployment.stop_reason = ""
    deployment.probe_path, deployment.engine_model = launch.probe_path, launch.model_name
    deployment.options = {**deployment.options, "pid_started": psutil.Process(process.pid).create_time(),
                          "spawned_at": time.time(), "argv": launch.argv}
    deployment.options.pop("restart_at", None)
    deployment.options.pop("probe_failures", None)
    deployment.save()
    threading.Thread(target=_watch, args=(process, deployment.id), daemon=True, name=f"watch-{deployment.id}").start()


def _watch(process: subprocess.Popen, deployment_id: str) -> None:
    with log_context(deployment_id=deployment_id):
        _follow(process, deployment_id)


def _follow(process: subprocess.Popen, deployment_id: str) -> None:
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
                            gpu=bool(deployment.gpu_ids), task=deployment.task)
    launch = engine.launch(model, request)
    # The operator's flags come last (the engines' parsers let the last one win) and the environment on top; the
    # engine sees exactly the GPUs it was placed on.
    placed = {"CUDA_VISIBLE_DEVICES": ",".join(str(index) for index in deployment.gpu_ids)} if deployment.gpu_ids \
        else {}
    return Launch(argv=[*launch.argv, *deployment.engine_args], env={**launch.env, **deployment.env, **placed},
                  probe_path=launch.probe_path, model_name=launch.model_name)


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
    path = deployment.probe_path or "/v1/models"
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
    last_lines = "\n".join(tail_lines(Path(deployment.log_path), ERROR_LOG_LINES)) if deployment.log_path else ""
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
