"""Engines on a Ray cluster's nodes (LLM_MANAGER_RAY_ADDRESS): who owns what is in docs/cluster.md.

The database owns the desired state (which deployments should run, with what); Ray owns placement (a placement
group per deployment, its GPUs on one node) and liveness (a node that stops answering its health checks is dead,
and so are its actors). Each deployment's engine belongs to a detached, named actor (deployments.engine_actor) on
the node Ray placed it on: a restarted service finds it again by name instead of starting the engine twice.

Nodes are the Ray nodes joined with `manage.py node join --name NAME`, which gives each a resource
`llm_node:NAME`; placement pins a deployment to a node by asking for a sliver of it.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from django.conf import settings
from django.db import close_old_connections
from django.db.models import F
from django.utils import timezone

from catalog.sources import ModelFiles
from core.api import ApiError
from deployments.engines import Engine, Launch
from deployments.models import Deployment, DeploymentStatus, Node
from deployments.placement import Gpu, NodeRoom, PlacementError, choose_node, spread_over_nodes
from deployments.resolution import memory_needed
from deployments.selectors import ROUTE_TTL
from deployments.supervisor import Admission

logger = logging.getLogger(__name__)

NAMESPACE = "llm_manager"
NODE_RESOURCE = "llm_node:"
PLACEMENT_TIMEOUT = 30.0
CALL_TIMEOUT = 5.0
# A node's fetch whose task shows no progress for this long has lost its follower (it writes every 0.5 s).
FOLLOWER_SILENCE = 10.0
HOLDING = (DeploymentStatus.STARTING, DeploymentStatus.RUNNING, DeploymentStatus.STOPPING)

_connect_lock = threading.Lock()
# Set as this process exits, before Ray disconnects it: a fetch's follower then stops without failing the
# deployment (the restarted service follows the fetch again, RayHost.adopt_start), and nothing connects anew.
_exiting = threading.Event()


def ray():
    """Ray, connected to the cluster (once per process)."""
    import ray as ray_module

    with _connect_lock:
        if not ray_module.is_initialized():
            if _exiting.is_set():
                raise RuntimeError("this process is exiting")
            options = {"_node_ip_address": settings.NODE_IP} if settings.NODE_IP else {}
            ray_module.init(address=settings.RAY_ADDRESS, namespace=NAMESPACE, log_to_driver=False,
                            logging_level=logging.WARNING, **options)
            atexit.register(_exiting.set)  # after Ray's own handler, so it runs before it (last in, first out)
    return ray_module


def node_name(resources: dict) -> str | None:
    return next((key[len(NODE_RESOURCE):] for key in resources if key.startswith(NODE_RESOURCE)), None)


def ray_nodes() -> dict[str, dict]:
    """Ray's nodes by name, joined with `node join` (a name rejoined: its newest entry, alive before dead)."""
    # Ray lists a dead node without its resources: its name is the one it had when last seen alive.
    known = dict(Node.objects.exclude(ray_node_id="").values_list("ray_node_id", "name"))
    found: dict[str, dict] = {}
    for entry in ray().nodes():
        name = node_name(entry.get("Resources") or {}) or known.get(entry["NodeID"])
        if name and entry["Alive"] and known.get(entry["NodeID"]) != name:
            Node.objects.update_or_create(name=name, defaults={"ray_node_id": entry["NodeID"],
                                                               "address": entry["NodeManagerAddress"]})
        if name and (name not in found or (entry["Alive"] and not found[name]["Alive"])):
            found[name] = entry
    return found


_agents: dict[str, object] = {}
AGENT_TIMEOUT = 5.0


def agent(name: str):
    """Node `name`'s agent (deployments.engine_actor.NodeAgent), made on first use, pinned to the node."""
    from deployments.engine_actor import NodeAgent

    if name not in _agents:
        _agents[name] = ray().remote(NodeAgent).options(
            name=f"node-{name}", namespace=NAMESPACE, get_if_exists=True, lifetime="detached", num_cpus=0,
            max_restarts=0, resources={f"{NODE_RESOURCE}{name}": 0.001}).remote()
    return _agents[name]


def node_stats(names: list[str]) -> dict[str, dict]:
    """Each node's GPUs (NVML: name, memory) and disk, from its agent; a node whose agent does not answer in time
    is left out."""
    pending = {name: agent(name).stats.remote(str(settings.MODELS_DIR)) for name in names}
    found = {}
    for name, reference in pending.items():
        try:
            found[name] = ray().get(reference, timeout=AGENT_TIMEOUT)
        except Exception:  # lost with its node, or slow: asked again (a new agent, if need be) next time
            _agents.pop(name, None)
    return found


def _draining() -> set[str]:
    return set(Node.objects.filter(draining=True).values_list("name", flat=True))


def _by_node(statuses, excluding: str = "") -> dict[str, list[Deployment]]:
    """The deployments in `statuses` (but `excluding`) by the node they are on."""
    found: dict[str, list[Deployment]] = {}
    for deployment in Deployment.objects.filter(status__in=statuses).exclude(node="").exclude(id=excluding):
        found.setdefault(deployment.node, []).append(deployment)
    return found


def nodes() -> list[dict]:
    """Every node, as GET /api/nodes shows it."""
    entries = ray_nodes()
    draining = _draining()
    holding = _by_node([*HOLDING, DeploymentStatus.ERROR])
    stats = node_stats([name for name, entry in entries.items() if entry["Alive"]])
    rows = []
    for name, entry in sorted(entries.items()):
        held = [d for d in holding.get(name, []) if d.status in HOLDING]
        resources = entry.get("Resources") or {}
        found = stats.get(name, {})
        rows.append({
            "id": name, "name": name, "ray_node_id": entry["NodeID"], "address": entry["NodeManagerAddress"],
            "alive": bool(entry["Alive"]), "draining": name in draining, "head": "node:__internal_head__" in resources,
            "gpus": {"total": int(resources.get("GPU", 0)),
                     "held": sum(len(d.gpu_ids) for d in held),
                     "by_deployment": {d.id: d.gpu_ids for d in held if d.gpu_ids},
                     "devices": found.get("gpus", [])},
            "disk_free_bytes": found.get("disk_free_bytes"), "disk_total_bytes": found.get("disk_total_bytes"),
            "cpus": resources.get("CPU", 0), "memory_bytes": int(resources.get("memory", 0)),
            "object_store_bytes": int(resources.get("object_store_memory", 0)),
            "deployments": [{"id": d.id, "name": d.name, "status": d.status, "gpu_ids": d.gpu_ids,
                             "port": d.port} for d in holding.get(name, [])]})
    return rows


def rooms(excluding: str = "") -> list[NodeRoom]:
    """Placement's view: the alive nodes, each with the GPUs no deployment holds (but `excluding`'s own), with
    their memory where the node's agent reads it through NVML (else Ray's count alone)."""
    draining = _draining()
    held = _by_node(HOLDING, excluding)
    spread_holders = [d for ds in held.values() for d in ds if d.options.get("spread")]
    alive = {name: entry for name, entry in ray_nodes().items() if entry["Alive"]}
    stats = node_stats(list(alive))
    found = []
    for name, entry in alive.items():
        count = int((entry.get("Resources") or {}).get("GPU", 0))
        devices = {gpu["index"]: gpu for gpu in stats.get(name, {}).get("gpus", [])}
        taken = {index for deployment in held.get(name, []) for index in deployment.gpu_ids}
        free = tuple(Gpu(index=index, name=devices.get(index, {}).get("name", f"GPU {index}"),
                         total_bytes=devices[index]["memory_total_bytes"] if len(devices) == count else 0,
                         free_bytes=devices[index]["memory_free_bytes"] if len(devices) == count else 0)
                     for index in range(count) if index not in taken)
        # vLLM's Ray executor holds GPUs of a spread deployment in its own placement group: counted, not numbered.
        spread_here = sum(n for holder in spread_holders for node_name, n in holder.options["spread"]
                          if node_name == name)
        free = free[:max(0, len(free) - spread_here)]
        found.append(NodeRoom(name=name, gpus=count, free_gpus=free, deployments=len(held.get(name, [])),
                              draining=name in draining))
    return found


def _choose(count: int, requested: str | None, excluding: str = "", reserve_fraction: float = 0.0,
            bytes_per_gpu: int = 0) -> str:
    try:
        return choose_node(rooms(excluding=excluding), count=count, requested=requested or None,
                           reserve_fraction=reserve_fraction, bytes_per_gpu=bytes_per_gpu)
    except PlacementError as exc:
        raise ApiError(exc.code, exc.message, exc.http_status, exc.details) from None


class RayHost:
    """Engines run by EngineActors on the cluster's nodes."""

    def nodes(self) -> list[dict]:
        return nodes()

    def _name(self, node_id: str) -> str:
        """The name of the node `node_id` names (its name or its Ray id); NODE_NOT_FOUND otherwise."""
        found = next((name for name, entry in ray_nodes().items() if node_id in (name, entry["NodeID"])), None)
        if found is None:
            raise ApiError("NODE_NOT_FOUND", f"No node {node_id!r} in the cluster", 404)
        return found

    def node(self, node_id: str) -> dict:
        name = self._name(node_id)
        return next(row for row in nodes() if row["id"] == name)

    def drain(self, node_id: str) -> dict:
        """No new deployments on the node; a worker moves its deployments off it one by one (move_off)."""
        from django_q.tasks import async_task

        name = self._name(node_id)
        Node.objects.update_or_create(name=name, defaults={"draining": True})
        async_task("deployments.cluster.move_off", name, task_name=f"drain-{name}")
        return self.node(name)

    def undrain(self, node_id: str) -> dict:
        name = self._name(node_id)
        Node.objects.update_or_create(name=name, defaults={"draining": False})
        return self.node(name)

    def gpus(self) -> list[dict]:
        """The alive nodes' GPUs as Ray counts them (what an engine's choice and default GPU count need; their
        memory is for placement, which asks the nodes' agents)."""
        return [{"index": index, "name": f"GPU {index} of {name}", "node": name,
                 "memory_total_bytes": 0, "memory_free_bytes": 0}
                for name, entry in ray_nodes().items() if entry["Alive"]
                for index in range(int((entry.get("Resources") or {}).get("GPU", 0)))]

    def admit(self, *, model: ModelFiles, engine: Engine, gpus: list[dict], max_model_len: int | None,
              gpu_memory_utilization: float, tensor_parallel_size: int, pipeline_parallel_size: int,
              gpu_ids: list[int] | None, gpu_count: int | None, node: str | None, port: int | None,
              force: bool) -> Admission:
        """The node it goes to: `node`, else the one with the most free GPUs (deployments.placement.choose_node)."""
        if gpu_ids:
            raise ApiError("VALIDATION_ERROR", "gpu_ids: on a cluster Ray assigns a node's GPUs; ask for gpu_count "
                           "(and node)", 400, {"gpu_ids": gpu_ids})
        if not settings.SHARED_STORAGE:
            refuse_unfetchable(model_id=model.model_id, source=model.source)
        count = gpu_count if gpu_count is not None else engine.default_gpu_count(tensor_parallel_size, len(gpus),
                                                                                 pipeline_parallel_size)
        required = memory_needed(model, max_model_len)
        fit = {"reserve_fraction": 0.0 if force or engine.gpu_use != "tensor_parallel" else gpu_memory_utilization,
               "bytes_per_gpu": 0 if force else required // max(count, 1)}
        try:
            return Admission(gpu_ids=[], gpu_count=count, node=_choose(count, node, **fit), required_bytes=required,
                             available_bytes=0, fit=fit)
        except ApiError as exc:
            # Bigger than any one node: vLLM's Ray executor takes GPUs of several (no node named, none draining).
            if exc.code != "INSUFFICIENT_GPU_MEMORY" or node or engine.gpu_use != "tensor_parallel" or count < 2:
                raise
        try:
            spread = spread_over_nodes(rooms(), count=count, **fit)
        except PlacementError as exc:
            raise ApiError(exc.code, exc.message, exc.http_status, exc.details) from None
        return Admission(gpu_ids=[], gpu_count=count, node=spread[0][0], required_bytes=required, available_bytes=0,
                         fit=fit, spread=spread)

    def _actor(self, deployment: Deployment):
        name = deployment.options.get("actor")
        return ray().get_actor(name, namespace=NAMESPACE) if name else None

    def start(self, deployment: Deployment, launch_for: Callable[[Deployment], Launch]) -> tuple[Launch, None]:
        """(Re)start: free what its last engine held, then place and start the next; what starts it (no process
        here to follow)."""
        self.release(deployment)
        return self.place_and_start(deployment, launch_for), None

    def place_and_start(self, deployment: Deployment, launch_for: Callable[[Deployment], Launch]) -> Launch:
        """Place the deployment (first on the node it was admitted to, later where choose_node says), start its
        actor and the engine, on the node's paths; a new generation of actor, so the last one may still serve
        while this one starts (a move). What starts the engine there."""
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from deployments.engine_actor import EngineActor

        distributed = bool(deployment.options.get("distributed"))
        # A spread deployment's GPUs are vLLM's to place (its Ray executor); this actor, its driver, takes none.
        count = 0 if distributed else int(deployment.options.get("gpu_count", 0))
        # The first placement is where admit() put it moments ago; a restart or a move goes wherever there is room.
        first = not deployment.options.get("generation")
        name = deployment.node if distributed or first else _choose(
            count, None, excluding=deployment.id, **deployment.options.get("fit", {}))
        generation = int(deployment.options.get("generation", 0)) + 1
        actor_name = f"{deployment.id}-{generation}"
        bundle = {f"{NODE_RESOURCE}{name}": 0.001, **({"GPU": count} if count else {})}
        group = placement_group([bundle], strategy="STRICT_PACK", name=actor_name, lifetime="detached")
        if not group.wait(PLACEMENT_TIMEOUT):
            remove_placement_group(group)
            raise ApiError("INSUFFICIENT_GPU_MEMORY", f"Ray could not place {count} GPU(s) on {name} within "
                           f"{PLACEMENT_TIMEOUT:.0f} s", 409, {"node": name, "gpu_count": count})
        actor = ray().remote(EngineActor).options(
            name=actor_name, namespace=NAMESPACE, lifetime="detached", num_cpus=0, num_gpus=count, max_restarts=0,
            max_concurrency=4,  # its progress and liveness answer while it fetches
            scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0),
        ).remote(deployment.id)
        where = ray().get(actor.where.remote(), timeout=PLACEMENT_TIMEOUT)
        low, high = settings.ENGINE_PORT_RANGE
        taken = list(Deployment.objects.filter(status__in=HOLDING, host=where["ip"]).exclude(id=deployment.id)
                     .exclude(port=None).values_list("port", flat=True))
        wanted_port = deployment.port if deployment.options.get("port_requested") else None
        port = ray().get(agent(name).reserve_port.remote(where["ip"], low, high, taken, settings.ENGINE_READY_TIMEOUT,
                                                         wanted_port), timeout=CALL_TIMEOUT)
        if port is None:
            self._discard(actor, group)
            raise ApiError("PORT_IN_USE", f"No free port in {low}-{high} on node {name}", 409)
        deployment.node, deployment.host, deployment.port, deployment.gpu_ids = name, where["ip"], port, \
            where["gpu_ids"]
        deployment.options = {**deployment.options, "actor": actor_name, "generation": generation,
                              "ray_node_id": where["node_id"]}
        launch = self._on_node(deployment, launch_for(deployment), where)
        if settings.SHARED_STORAGE:
            started = ray().get(actor.start.remote(launch.argv, launch.env, _data_dir(where), deployment.log_path),
                                timeout=PLACEMENT_TIMEOUT)
            deployment.pid = started["pid"]
            deployment.options["spawned_at"] = time.time()
            return launch
        # The model goes into the node's own cache first (shown as a download task of the node), then the engine
        # starts there; meanwhile the deployment is `starting`.
        try:
            fetch = NodeFetch(deployment=deployment, node=name, models_dir=where["models_dir"])
        except ApiError:
            self._discard(actor, group)
            raise
        fetch.follow(actor, actor_name, launch, _data_dir(where), deployment.log_path)
        return launch

    @staticmethod
    def _on_node(deployment: Deployment, launch: Launch, where: dict) -> Launch:
        """The launch as the node runs it: its own model cache in the paths unless storage is shared, and the
        cluster's address for vLLM's Ray executor."""
        if deployment.options.get("distributed"):
            launch.env["RAY_ADDRESS"] = settings.RAY_ADDRESS
        if settings.SHARED_STORAGE:
            return launch
        ours, theirs = str(settings.MODELS_DIR), where["models_dir"]
        return replace(launch, argv=[arg.replace(ours, theirs) for arg in launch.argv],
                       env={key: value.replace(ours, theirs) for key, value in launch.env.items()})

    def adopt_start(self, deployment: Deployment, launch_for: Callable[[Deployment], Launch]) -> None:
        """Follow a start whose follower is gone: the service restarted while the node fetched the model (the
        actor goes on fetching; without a follower no one would start the engine). Asking a follower's actor again
        is harmless: it waits for the fetch it has and hands back an engine it already started."""
        if settings.SHARED_STORAGE or deployment.pid is not None or not deployment.options.get("actor"):
            return
        fetch_task = _node_tasks(node=deployment.node, source=deployment.model_source,
                                 model_id=deployment.model_id).first()
        if fetch_task is None or (timezone.now() - fetch_task.updated_at).total_seconds() < FOLLOWER_SILENCE:
            return
        actor = self._actor(deployment)
        where = ray().get(actor.where.remote(), timeout=CALL_TIMEOUT)
        logger.info("following the start of %s on %s again (its follower went silent)", deployment.id,
                    deployment.node)
        fetch = NodeFetch(deployment=deployment, node=deployment.node, models_dir=where["models_dir"])
        fetch.follow(actor, deployment.options["actor"], self._on_node(deployment, launch_for(deployment), where),
                     _data_dir(where), deployment.log_path)

    def _node_alive(self, deployment: Deployment) -> bool:
        """Ray's word on the deployment's node (a call to an actor on a node just lost may hang until its timeout)."""
        return bool(ray_nodes().get(deployment.node, {}).get("Alive"))

    def alive(self, deployment: Deployment) -> bool:
        """False only on Ray's word: the node is lost, the actor is gone or dead, or it says its engine ended. An
        actor that answers late (a busy node) is not dead: the next round asks again, and a hung engine is the
        readiness timeout's and the probes' to catch."""
        from ray.exceptions import ActorUnavailableError, RayActorError

        if not self._node_alive(deployment):
            return False
        try:
            actor = self._actor(deployment)
            return bool(actor) and bool(ray().get(actor.alive.remote(), timeout=CALL_TIMEOUT))
        except ValueError:  # no actor by that name: released, or never recorded
            return False
        except ActorUnavailableError as exc:  # a RayActorError that Ray itself calls temporary
            logger.warning("the actor of %s is unavailable for now: %s", deployment.id, exc)
            return True
        except RayActorError:  # it died (with its node, or killed)
            return False
        except Exception as exc:  # no answer within CALL_TIMEOUT, or a transient GCS error
            logger.warning("the actor of %s did not answer: %s: %s", deployment.id, type(exc).__name__, exc)
            return True

    def why_down(self, deployment: Deployment) -> str:
        return "the engine process exited" if self._node_alive(deployment) else f"node {deployment.node} lost"

    def stop(self, deployment: Deployment, grace: float) -> None:
        try:
            actor = self._actor(deployment)
            if actor is not None:
                ray().get(actor.stop.remote(grace), timeout=grace + CALL_TIMEOUT)
        except Exception:
            pass  # gone already, or its node is: release() (supervisor.terminate calls it next) clears the rest

    def release(self, deployment: Deployment) -> None:
        """Kill its actor (and so its engine) and free its placement group's GPUs."""
        if deployment.options.get("actor"):
            self.release_named(deployment.options["actor"])

    def release_named(self, name: str) -> None:
        """Kill the actor `name` and remove its placement group (both named alike), whichever are still there."""
        from ray.util import placement_group_table
        from ray.util.placement_group import get_placement_group

        try:
            actor = ray().get_actor(name, namespace=NAMESPACE)
        except ValueError:
            actor = None
        try:
            group = get_placement_group(name)
        except ValueError:
            group = None
        if group is not None and placement_group_table(group).get("state") == "REMOVED":
            group = None
        self._discard(actor, group)

    def _discard(self, actor, group) -> None:
        from ray.util.placement_group import remove_placement_group

        if actor is not None:
            try:
                ray().kill(actor, no_restart=True)
            except Exception:
                pass  # died already
        if group is not None:
            try:
                remove_placement_group(group)
            except Exception:
                pass  # removed already

    def log_lines(self, deployment: Deployment, lines: int) -> list[str] | None:
        """The engine's last log lines from its node; None when the actor is gone (its node, say)."""
        if not self._node_alive(deployment):
            return None
        try:
            actor = self._actor(deployment)
            return ray().get(actor.tail.remote(lines), timeout=CALL_TIMEOUT) if actor else None
        except Exception:
            return None


def _data_dir(where: dict) -> str:
    """The node's data dir, its engines' working directory."""
    return str(Path(where["models_dir"]).parent)


def move_off(node: str) -> None:
    """The drain's job: each running deployment on `node` moves to another node, one at a time (see move)."""
    for deployment in Deployment.objects.filter(node=node, status=DeploymentStatus.RUNNING).order_by("created_at"):
        if not Node.objects.filter(name=node, draining=True).exists():
            return  # undrained meanwhile
        try:
            move(deployment)
        except Exception:
            logger.exception("moving %s off %s failed; it stays there", deployment.id, node)


def move(deployment: Deployment) -> None:
    """Start the deployment's next engine on another node, switch its route once that one answers, then stop the
    old one: a caller sees no failed request (the proxy reads host and port per request)."""
    from deployments import supervisor

    old = Deployment.objects.get(id=deployment.id)
    successor = Deployment.objects.get(id=deployment.id)
    host = RayHost()
    launch = host.place_and_start(successor, supervisor.launch_of)
    deadline = time.monotonic() + settings.ENGINE_READY_TIMEOUT
    while not supervisor.probe(successor)[0]:
        if time.monotonic() > deadline or not host.alive(successor):
            host.release(successor)
            raise RuntimeError(f"{deployment.id} did not answer on {successor.node}")
        time.sleep(0.1)
    switched = Deployment.objects.filter(id=deployment.id, status=DeploymentStatus.RUNNING,
                                         options__actor=old.options.get("actor")).update(
        node=successor.node, host=successor.host, port=successor.port, gpu_ids=successor.gpu_ids,
        pid=successor.pid, options={**successor.options, "argv": launch.argv})
    if not switched:  # stopped or restarted meanwhile: the new engine is not wanted
        host.release(successor)
        return
    logger.info("%s moved from %s to %s", deployment.id, old.node, successor.node)
    # Callers that read the old route (cached up to ROUTE_TTL) reach the old engine meanwhile: it answers them.
    time.sleep(2 * ROUTE_TTL + 1)
    supervisor.terminate(old)


MAX_INLINE_BYTES = 1024 * 1024  # the source's own small files (refs, manifests) travel in the fetch request
RECORD_WAIT = 5.0


def _node_tasks(*, node: str, source: str, model_id: str):
    """A node's download tasks of a model, newest first."""
    from downloads.models import DownloadTask

    return DownloadTask.everywhere.filter(node=node, source=source, model_id=model_id).order_by("-created_at")


def refuse_unfetchable(*, model_id: str, source: str):
    """The service's completed download of the model, which a node fetches the same way; 400 for a model imported
    in place (its files came from no URL)."""
    from downloads.selectors import latest_completed

    task = latest_completed(source=source, model_id=model_id)
    if task is None or task.imported:
        raise ApiError("VALIDATION_ERROR", f"{model_id} was imported in place here, not downloaded: a node without "
                       "shared storage (LLM_MANAGER_SHARED_STORAGE) cannot fetch it", 400)
    return task


class NodeFetch:
    """A node's fetch of a deployment's model into its own cache (no shared storage): the plan (the files of the
    service's own completed download, with their URLs and digests, and the source's layout around them), a
    download task of the node showing its progress, and the engine's start once the model is there."""

    def __init__(self, *, deployment: Deployment, node: str, models_dir: str):
        self.deployment_id, self.node, self.models_dir = deployment.id, node, models_dir
        self.source = refuse_unfetchable(model_id=deployment.model_id, source=deployment.model_source)
        self.task = self._node_task()

    def _node_path(self, path: str) -> str:
        return path.replace(str(settings.MODELS_DIR), self.models_dir)

    def _node_task(self):
        from downloads.models import DownloadFile, DownloadStatus, DownloadTask

        source = self.source
        task = _node_tasks(node=self.node, source=source.source, model_id=source.model_id).filter(
            commit=source.commit).first()
        if task is None:
            task = DownloadTask.everywhere.create(
                node=self.node, model_id=source.model_id, source=source.source, revision=source.revision,
                include=source.include, commit=source.commit, total_bytes=source.total_bytes,
                storage_path=self._node_path(source.storage_path), status=DownloadStatus.PENDING)
            DownloadFile.objects.bulk_create(
                DownloadFile(task=task, path=file.path, url=file.url, destination=self._node_path(file.destination),
                             size=file.size, sha256=file.sha256, etag=file.etag, media_type=file.media_type)
                for file in source.files.all())
        return task

    def items(self) -> list[dict]:
        """What the node's actor fetches (deployments.engine_actor.EngineActor.fetch), paths relative to the cache."""
        from catalog import services as catalog
        from downloads.jobs import digest_algorithm, expected_digest

        root = settings.MODELS_DIR
        auth = catalog.source_of(self.source.source).authorization()
        items, remote = [], set()
        for file in self.source.files.all():
            remote.add(file.destination)
            items.append({"kind": "remote", "path": str(Path(file.destination).relative_to(root)), "url": file.url,
                          "size": file.size, "expected": expected_digest(file), "algorithm": digest_algorithm(file),
                          "auth": auth})
        storage = Path(self.source.storage_path)
        layout = [storage] if not storage.is_dir() or storage.is_symlink() else [
            Path(folder) / name for folder, folders, files in os.walk(storage) for name in sorted(folders + files)]
        for path in layout:
            if str(path) in remote or not (path.is_symlink() or path.is_file()):
                continue
            relative = str(path.relative_to(root))
            if path.is_symlink():
                items.append({"kind": "link", "path": relative, "target": os.readlink(path)})
            elif path.stat().st_size <= MAX_INLINE_BYTES:
                items.append({"kind": "file", "path": relative, "data": path.read_bytes()})
        return items

    def follow(self, actor, actor_name: str, launch: Launch, cwd: str, log_path: str) -> None:
        """In a thread: the actor's fetch, its progress on the node's task, then the engine's start."""
        threading.Thread(target=self.then_start, args=(actor, actor_name, launch.argv, launch.env, cwd, log_path),
                         daemon=True, name=f"fetch-{self.deployment_id}").start()

    def then_start(self, actor, actor_name: str, argv: list[str], env: dict[str, str], cwd: str,
                   log_path: str) -> None:
        from deployments import supervisor
        from downloads.jobs import transfer_settings
        from downloads.models import DownloadFile, DownloadStatus, DownloadTask

        rows = DownloadTask.everywhere.filter(id=self.task.id)
        try:
            by_size = self.task.status == DownloadStatus.COMPLETED
            rows.update(status=DownloadStatus.DOWNLOADING, error="", error_code="", started_at=timezone.now(),
                        updated_at=timezone.now())
            running = actor.fetch.remote(self.items(), asdict(transfer_settings()), by_size)
            samples: list[tuple[float, int]] = []
            while not ray().wait([running], timeout=0.5)[0]:
                done = ray().get(actor.progress.remote(), timeout=CALL_TIMEOUT)["done"]
                samples = [*samples[-9:], (time.monotonic(), done)]
                speed = (done - samples[0][1]) / (samples[-1][0] - samples[0][0]) if len(samples) > 1 else 0.0
                rows.update(downloaded_bytes=done, speed_bps=speed, heartbeat_at=timezone.now(),
                            eta_seconds=(self.task.total_bytes - done) / speed if speed > 0 else None,
                            updated_at=timezone.now())
            ray().get(running)
            rows.update(status=DownloadStatus.COMPLETED, downloaded_bytes=self.task.total_bytes, speed_bps=0,
                        eta_seconds=0, completed_at=timezone.now(), updated_at=timezone.now())
            DownloadFile.objects.filter(task_id=self.task.id).update(status=DownloadFile.Status.COMPLETED,
                                                                     downloaded_bytes=F("size"))
            started = ray().get(actor.start.remote(argv, env, cwd, log_path), timeout=PLACEMENT_TIMEOUT)
        except Exception as exc:
            if _exiting.is_set():
                return
            lost = not ray_nodes().get(self.node, {}).get("Alive")
            message = f"node {self.node} lost" if lost else f"{type(exc).__name__}: {exc}"[:2000]
            rows.update(status=DownloadStatus.FAILED, error_code="NODE_LOST" if lost else "FETCH_FAILED",
                        error=message, speed_bps=0, eta_seconds=None, updated_at=timezone.now())
            if not lost:  # a lost node is the caretaker's to notice (its deployments fail and restart by policy)
                failed = Deployment.objects.filter(id=self.deployment_id, options__actor=actor_name).first()
                if failed is not None:
                    RayHost().release(failed)
                    Deployment.objects.filter(id=failed.id, status=DeploymentStatus.STARTING).update(
                        status=DeploymentStatus.ERROR, error=f"fetching the model on node {self.node} failed: "
                        f"{message}", updated_at=timezone.now())
            logger.warning("fetching %s on %s failed: %s", self.task.model_id, self.node, message)
            return
        finally:
            close_old_connections()
        # The engine's pid goes to the deployment once it is recorded with this actor: at once for a start
        # (supervisor.spawn saves it as this fetch begins), never for a drain's successor, whose move records it
        # when it switches the route — that one is not waited for.
        deadline = time.monotonic() + RECORD_WAIT
        while time.monotonic() < deadline:
            current = Deployment.objects.filter(id=self.deployment_id, options__actor=actor_name).first()
            if current is not None:
                Deployment.objects.filter(id=current.id, options__actor=actor_name).update(
                    pid=started["pid"], options={**current.options, "spawned_at": time.time(), "argv": argv},
                    updated_at=timezone.now())
                supervisor.await_ready(self.deployment_id, started["pid"])
                return
            time.sleep(0.05)
