"""Load on demand: a call for a model that is downloaded but not running starts it, then answers.

A stopped (or idle-stopped, or failed) deployment is started again; a model with no deployment gets one with the
defaults. Callers that arrive while a start is under way wait for that start: in this process they share one
task, across web server processes a lease in the database lets one of them start it while the others find it.
A start that fails answers its own error, and leaves nothing behind that the next call would wait on.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time

from django.conf import settings

from catalog import selectors as catalog
from catalog.sources import SOURCES
from core.api import ApiError
from core.db import in_thread_pool
from core.leases import hold, release
from deployments import services as deployments
from deployments.models import Deployment, DeploymentStatus

POLL_SECONDS = 0.05
LEASE_SECONDS = 30.0
_HOLDER = f"{socket.gethostname()}:{os.getpid()}"
_starts: dict[str, asyncio.Future] = {}  # the start in flight in this process, by what is being loaded


async def loaded(*, deployment: Deployment | None = None, model: str = "", task: str) -> Deployment | None:
    """The deployment (or one serving `model` for `task`) running, started first if need be; None when `model` is
    neither deployed nor downloaded."""
    key = f"deployment:{deployment.id}" if deployment else f"model:{task}:{model}"
    start = _starts.get(key)
    if start is None or start.done():
        start = _starts[key] = asyncio.ensure_future(_load(key, deployment.id if deployment else "", model, task))
    # Shielded: a caller that leaves does not cancel the start the others wait on.
    return await asyncio.shield(start)


async def _load(key: str, deployment_id: str, model: str, task: str) -> Deployment | None:
    started = await in_thread_pool(_start)(key=key, deployment_id=deployment_id, model=model, task=task)
    if started is None:
        return None
    deadline = time.monotonic() + settings.ENGINE_READY_TIMEOUT + 10
    while True:
        current = await in_thread_pool(Deployment.objects.filter(id=started.id).first)()
        if current is None:
            raise ApiError("DEPLOYMENT_NOT_FOUND", f"Deployment {started.id} was deleted while it started", 404)
        if current.status == DeploymentStatus.RUNNING:
            return current
        if current.status != DeploymentStatus.STARTING or time.monotonic() > deadline:
            raise ApiError("ENGINE_ERROR", f"{current.name or current.id} ({current.model_id}) did not start: "
                           f"{current.error or current.status}", 502)
        await asyncio.sleep(POLL_SECONDS)


def _start(*, key: str, deployment_id: str, model: str, task: str) -> Deployment | None:
    """Under the lease of `key`: the deployment already starting, or one started now (None: nothing to start)."""
    lease = "load:" + hashlib.sha1(key.encode()).hexdigest()[:40]
    deadline = time.monotonic() + LEASE_SECONDS
    while not hold(name=lease, holder=_HOLDER, seconds=LEASE_SECONDS):
        if time.monotonic() > deadline:
            raise ApiError("ENGINE_ERROR", f"another process has been starting {model or deployment_id} for "
                           f"{LEASE_SECONDS:.0f} s", 504)
        time.sleep(POLL_SECONDS)
    try:
        if deployment_id:
            deployment = Deployment.objects.filter(id=deployment_id).first()
            if deployment is None:
                raise ApiError("DEPLOYMENT_NOT_FOUND", f"No deployment {deployment_id}", 404)
            return _started_again(deployment)
        deployment = _deployment_serving(model, task)
        if deployment is not None:
            return _started_again(deployment)
        stored = _downloaded(model)
        if stored is None:
            return None
        return deployments.start_deployment(model_id=stored.model_id, model_source=stored.source, task=task)
    finally:
        release(name=lease, holder=_HOLDER)


def _started_again(deployment: Deployment) -> Deployment:
    if deployment.status in (DeploymentStatus.STARTING, DeploymentStatus.RUNNING):
        return deployment
    if deployment.status == DeploymentStatus.STOPPING:
        raise ApiError("DEPLOYMENT_NOT_RUNNING", f"Deployment {deployment.id} is stopping", 409)
    return deployments.restart_deployment(deployment_id=deployment.id)


def _deployment_serving(model: str, task: str) -> Deployment | None:
    """The deployment a call for `model` means, whatever its status: by name, id or model id; a running or
    starting one first, then the one stopped last."""
    candidates = Deployment.objects.filter(task=task).exclude(status=DeploymentStatus.STOPPING)
    for lookup in ({"name": model}, {"id": model}, {"model_id": model}):
        found = list(candidates.filter(**lookup).order_by("-updated_at")[:20])
        if found:
            up = [d for d in found if d.status in (DeploymentStatus.STARTING, DeploymentStatus.RUNNING)]
            return (up or found)[0]
    return None


def _downloaded(model: str):
    """The downloaded model a call names (an Ollama name may leave out its tag), the first source's if several."""
    for source in SOURCES.values():
        try:
            model_id = source.canonical_id(model)
        except ValueError:
            continue
        found = catalog.downloaded_model(model_id=model_id, source=source.name)
        if found is not None:
            return found
    return None
