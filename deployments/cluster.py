"""Engines on a Ray cluster's nodes (LLM_MANAGER_RAY_ADDRESS): who owns what is in docs/cluster.md.

The database owns the desired state (which deployments should run, with what); Ray owns placement (a placement
group per deployment, its GPUs on one node) and liveness (a node that stops answering its health checks is dead,
and so are its actors). Each deployment's engine belongs to a detached, named actor (deployments.engine_actor) on
the node Ray placed it on: a restarted service finds it again by name instead of starting the engine twice.

Nodes are the Ray nodes joined with `manage.py node join --name NAME`, which gives each a resource
`llm_node:NAME`; placement pins a deployment to a node by asking for a sliver of it.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from django.conf import settings

from catalog.sources import ModelFiles
from core.api import ApiError
from deployments.engines import Engine, Launch
from deployments.models import Deployment, DeploymentStatus, Node
from deployments.placement import NodeRoom, PlacementError, choose_node
from deployments.resolution import memory_needed
from deployments.selectors import ROUTE_TTL
from deployments.supervisor import Admission

logger = logging.getLogger(__name__)

NAMESPACE = "llm_manager"
NODE_RESOURCE = "llm_node:"
PLACEMENT_TIMEOUT = 30.0
CALL_TIMEOUT = 5.0
HOLDING = (DeploymentStatus.STARTING, DeploymentStatus.RUNNING, DeploymentStatus.STOPPING)

_connect_lock = threading.Lock()


def ray():
    """Ray, connected to the cluster (once per process)."""
    import ray as ray_module

    with _connect_lock:
        if not ray_module.is_initialized():
            options = {"_node_ip_address": settings.NODE_IP} if settings.NODE_IP else {}
            ray_module.init(address=settings.RAY_ADDRESS, namespace=NAMESPACE, log_to_driver=False,
                            logging_level=logging.WARNING, **options)
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


def nodes() -> list[dict]:
    """Every node, as GET /api/nodes shows it."""
    entries = ray_nodes()
    draining = set(Node.objects.filter(draining=True).values_list("name", flat=True))
    holding: dict[str, list[Deployment]] = {}
    for deployment in Deployment.objects.filter(status__in=[*HOLDING, DeploymentStatus.ERROR]).exclude(node=""):
        holding.setdefault(deployment.node, []).append(deployment)
    rows = []
    for name, entry in sorted(entries.items()):
        held = [d for d in holding.get(name, []) if d.status in HOLDING]
        resources = entry.get("Resources") or {}
        rows.append({
            "id": name, "name": name, "ray_node_id": entry["NodeID"], "address": entry["NodeManagerAddress"],
            "alive": bool(entry["Alive"]), "draining": name in draining, "head": "node:__internal_head__" in resources,
            "gpus": {"total": int(resources.get("GPU", 0)),
                     "held": sum(len(d.gpu_ids) for d in held),
                     "by_deployment": {d.id: d.gpu_ids for d in held if d.gpu_ids}},
            "cpus": resources.get("CPU", 0), "memory_bytes": int(resources.get("memory", 0)),
            "object_store_bytes": int(resources.get("object_store_memory", 0)),
            "deployments": [{"id": d.id, "name": d.name, "status": d.status, "gpu_ids": d.gpu_ids,
                             "port": d.port} for d in holding.get(name, [])]})
    return rows


def rooms(excluding: str = "") -> list[NodeRoom]:
    """Placement's view: the alive nodes with their GPUs and what deployments hold (but `excluding`'s own)."""
    draining = set(Node.objects.filter(draining=True).values_list("name", flat=True))
    held: dict[str, list[Deployment]] = {}
    for deployment in Deployment.objects.filter(status__in=HOLDING).exclude(node="").exclude(id=excluding):
        held.setdefault(deployment.node, []).append(deployment)
    return [NodeRoom(name=name, gpus=int((entry.get("Resources") or {}).get("GPU", 0)),
                     gpus_held=sum(len(d.gpu_ids) for d in held.get(name, [])),
                     deployments=len(held.get(name, [])), draining=name in draining)
            for name, entry in ray_nodes().items() if entry["Alive"]]


def _choose(count: int, requested: str | None, excluding: str = "") -> str:
    try:
        return choose_node(rooms(excluding=excluding), count=count, requested=requested or None)
    except PlacementError as exc:
        raise ApiError(exc.code, exc.message, exc.http_status, exc.details) from None


class RayHost:
    """Engines run by EngineActors on the cluster's nodes."""

    def nodes(self) -> list[dict]:
        return nodes()

    def node(self, node_id: str) -> dict:
        found = next((row for row in nodes() if node_id in (row["id"], row["ray_node_id"])), None)
        if found is None:
            raise ApiError("NODE_NOT_FOUND", f"No node {node_id!r} in the cluster", 404)
        return found

    def drain(self, node_id: str) -> dict:
        """No new deployments on the node; a worker moves its deployments off it one by one (move_off)."""
        from django_q.tasks import async_task

        name = self.node(node_id)["id"]
        Node.objects.update_or_create(name=name, defaults={"draining": True})
        async_task("deployments.cluster.move_off", name, task_name=f"drain-{name}")
        return self.node(name)

    def undrain(self, node_id: str) -> dict:
        name = self.node(node_id)["id"]
        Node.objects.update_or_create(name=name, defaults={"draining": False})
        return self.node(name)

    def gpus(self) -> list[dict]:
        """The alive nodes' GPUs as Ray counts them (their memory is each node's own business)."""
        return [{"index": index, "name": f"GPU {index} of {room.name}", "node": room.name,
                 "memory_total_bytes": 0, "memory_free_bytes": 0}
                for room in rooms() for index in range(room.gpus)]

    def admit(self, *, model: ModelFiles, engine: Engine, gpus: list[dict], max_model_len: int | None,
              gpu_memory_utilization: float, tensor_parallel_size: int, gpu_ids: list[int] | None,
              gpu_count: int | None, node: str | None, port: int | None, force: bool) -> Admission:
        """The node it goes to: `node`, else the one with the most free GPUs (deployments.placement.choose_node)."""
        if gpu_ids:
            raise ApiError("VALIDATION_ERROR", "gpu_ids: on a cluster Ray assigns a node's GPUs; ask for gpu_count "
                           "(and node)", 400, {"gpu_ids": gpu_ids})
        count = gpu_count if gpu_count is not None else engine.default_gpu_count(tensor_parallel_size, len(gpus))
        return Admission(gpu_ids=[], gpu_count=count, node=_choose(count, node),
                         required_bytes=memory_needed(model, max_model_len), available_bytes=0)

    def _actor(self, deployment: Deployment):
        name = deployment.options.get("actor")
        return ray().get_actor(name, namespace=NAMESPACE) if name else None

    def start(self, deployment: Deployment, launch_for: Callable[[Deployment], Launch]) -> None:
        """(Re)start: free what its last engine held, then place and start the next."""
        self.release(deployment)
        self.place_and_start(deployment, launch_for)

    def place_and_start(self, deployment: Deployment, launch_for: Callable[[Deployment], Launch]) -> None:
        """Place the deployment (its named node, else where choose_node says), start its actor and the engine; a
        new generation of actor, so the last one may still serve while this one starts (a move)."""
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from deployments.engine_actor import EngineActor

        count = int(deployment.options.get("gpu_count", 0))
        # A node asked for holds its first placement; a restart after a failure goes wherever there is room.
        pinned = deployment.options.get("node_requested") and not deployment.options.get("generation")
        name = _choose(count, deployment.node if pinned else None, excluding=deployment.id)
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
            scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0),
        ).remote(deployment.id)
        where = ray().get(actor.where.remote(), timeout=PLACEMENT_TIMEOUT)
        low, high = settings.ENGINE_PORT_RANGE
        taken = list(Deployment.objects.filter(status__in=HOLDING, host=where["ip"]).exclude(id=deployment.id)
                     .exclude(port=None).values_list("port", flat=True))
        wanted_port = deployment.port if deployment.options.get("port_requested") else None
        port = ray().get(actor.reserve_port.remote(where["ip"], low, high, taken, wanted_port), timeout=CALL_TIMEOUT)
        if port is None:
            self._discard(actor, group)
            raise ApiError("PORT_IN_USE", f"No free port in {low}-{high} on node {name}", 409)
        deployment.node, deployment.host, deployment.port, deployment.gpu_ids = name, where["ip"], port, \
            where["gpu_ids"]
        deployment.options = {**deployment.options, "actor": actor_name, "generation": generation,
                              "ray_node_id": where["node_id"]}
        launch: Launch = launch_for(deployment)
        started = ray().get(actor.start.remote(launch.argv, launch.env, str(settings.DATA_DIR),
                                               str(Path(deployment.log_path))), timeout=PLACEMENT_TIMEOUT)
        deployment.pid = started["pid"]
        deployment.options["spawned_at"] = time.time()

    def alive(self, deployment: Deployment) -> bool:
        try:
            actor = self._actor(deployment)
            return bool(actor) and bool(ray().get(actor.alive.remote(), timeout=CALL_TIMEOUT))
        except Exception:  # no such actor, or it died with its node, or it does not answer: not alive
            return False

    def why_down(self, deployment: Deployment) -> str:
        entry = ray_nodes().get(deployment.node)
        if entry is None or not entry["Alive"]:
            return f"node {deployment.node} lost"
        return "the engine process exited"

    def stop(self, deployment: Deployment, grace: float) -> None:
        try:
            actor = self._actor(deployment)
            if actor is not None:
                ray().get(actor.stop.remote(grace), timeout=grace + CALL_TIMEOUT)
        except Exception:
            pass  # gone already, or its node is: release() below clears what is left
        self.release(deployment)

    def release(self, deployment: Deployment) -> None:
        """Kill its actor (and so its engine) and free its placement group's GPUs."""
        name = deployment.options.get("actor")
        if not name:
            return
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
        try:
            actor = self._actor(deployment)
            return ray().get(actor.tail.remote(lines), timeout=CALL_TIMEOUT) if actor else None
        except Exception:
            return None


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
    successor.options = {**successor.options, "node_requested": False}
    launched: list[Launch] = []

    def launch_for(placed: Deployment) -> Launch:
        launched.append(supervisor.launch_of(placed))
        return launched[-1]

    host = RayHost()
    host.place_and_start(successor, launch_for)
    deadline = time.monotonic() + settings.ENGINE_READY_TIMEOUT
    while not supervisor.probe(successor)[0]:
        if time.monotonic() > deadline or not host.alive(successor):
            host.release(successor)
            raise RuntimeError(f"{deployment.id} did not answer on {successor.node}")
        time.sleep(0.1)
    switched = Deployment.objects.filter(id=deployment.id, status=DeploymentStatus.RUNNING,
                                         options__actor=old.options.get("actor")).update(
        node=successor.node, host=successor.host, port=successor.port, gpu_ids=successor.gpu_ids,
        pid=successor.pid, options={**successor.options, "argv": launched[-1].argv})
    if not switched:  # stopped or restarted meanwhile: the new engine is not wanted
        host.release(successor)
        return
    logger.info("%s moved from %s to %s", deployment.id, old.node, successor.node)
    # Callers that read the old route (cached up to ROUTE_TTL) reach the old engine meanwhile: it answers them.
    time.sleep(2 * ROUTE_TTL + 1)
    host.stop(old, settings.ENGINE_STOP_GRACE)
