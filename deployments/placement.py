"""Which GPUs a deployment takes: one pure function over an inventory, whoever made the inventory (NVML on this
machine today; a cluster's nodes later).

A GPU is eligible when its free memory covers what the engine will take on it: vLLM reserves
`gpu_memory_utilization` × the GPU's total on each GPU it uses (whatever the model's size), llama.cpp about the
model's share. Without a request for particular GPUs, the eligible ones with the most free memory are taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    total_bytes: int
    free_bytes: int


@dataclass
class PlacementError(Exception):
    """`code` is the API's error code (400 for GPUs that are not there, 409 for GPUs without room)."""

    code: str
    message: str
    http_status: int
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def needed_on(gpu: Gpu, *, reserve_fraction: float, bytes_per_gpu: int) -> int:
    """What the engine takes on `gpu`: its reserved share of the GPU, or the model's share, whichever is more."""
    return max(int(gpu.total_bytes * reserve_fraction), bytes_per_gpu)


def place(inventory: list[Gpu], *, count: int, requested: list[int] | None = None, reserve_fraction: float = 0.0,
          bytes_per_gpu: int = 0) -> list[int]:
    """The indexes of the GPUs a deployment takes: `requested` ones (each must exist and have room), else the
    `count` eligible GPUs with the most free memory; [] when it takes none. PlacementError otherwise."""
    by_index = {gpu.index: gpu for gpu in inventory}

    def fits(gpu: Gpu) -> bool:
        return gpu.free_bytes >= needed_on(gpu, reserve_fraction=reserve_fraction, bytes_per_gpu=bytes_per_gpu)

    if requested:
        if any(index not in by_index for index in requested) or len(set(requested)) != len(requested):
            raise PlacementError("VALIDATION_ERROR", f"gpu_ids: {requested} are not distinct GPUs of this machine "
                                 f"(it has {sorted(by_index) or 'none'})", 400,
                                 {"gpu_ids": requested, "gpus": sorted(by_index)})
        if all(fits(by_index[index]) for index in requested):
            return list(requested)
        raise _no_room(inventory, len(requested), reserve_fraction, bytes_per_gpu)
    if count <= 0:
        return []
    if count > len(inventory):
        raise PlacementError("VALIDATION_ERROR", f"{count} GPU(s) needed; this machine has {len(inventory)}", 400,
                             {"gpu_count": count, "gpus": sorted(by_index)})
    eligible = sorted((gpu for gpu in inventory if fits(gpu)), key=lambda gpu: (-gpu.free_bytes, gpu.index))
    if len(eligible) < count:
        raise _no_room(inventory, count, reserve_fraction, bytes_per_gpu)
    return sorted(gpu.index for gpu in eligible[:count])


def _no_room(inventory: list[Gpu], count: int, reserve_fraction: float, bytes_per_gpu: int) -> PlacementError:
    figures = [{"gpu": gpu.index, "name": gpu.name, "free_bytes": gpu.free_bytes,
                "needed_bytes": needed_on(gpu, reserve_fraction=reserve_fraction, bytes_per_gpu=bytes_per_gpu)}
               for gpu in inventory]
    return PlacementError(
        "INSUFFICIENT_GPU_MEMORY", f"{count} GPU(s) with room needed; " + "; ".join(
            f"GPU {f['gpu']}: {f['free_bytes']} bytes free, {f['needed_bytes']} needed" for f in figures),
        409, {"gpus": figures})


@dataclass(frozen=True)
class NodeRoom:
    """A cluster node as placement sees it: its GPUs (Ray's count) and how many of them deployments hold."""

    name: str
    gpus: int
    gpus_held: int
    deployments: int
    draining: bool = False


def choose_node(nodes: list[NodeRoom], *, count: int, requested: str | None = None) -> str:
    """The node a deployment of `count` GPUs (all on one node) goes to: `requested` (it must exist, not be draining
    and have room), else the node with the most free GPUs (for a CPU engine: the fewest deployments), then by name.
    PlacementError otherwise (400 unknown node, 409 draining or no room)."""
    by_name = {node.name: node for node in nodes}

    def room(node: NodeRoom) -> int:
        return node.gpus - node.gpus_held

    if requested:
        node = by_name.get(requested)
        if node is None:
            raise PlacementError("VALIDATION_ERROR", f"node: no node {requested!r} in the cluster (it has "
                                 f"{', '.join(sorted(by_name)) or 'none'})", 400, {"node": requested,
                                                                                  "nodes": sorted(by_name)})
        if node.draining:
            raise PlacementError("NODE_DRAINING", f"node {requested} is draining: it takes no new deployments",
                                 409, {"node": requested})
        candidates = [node]
    else:
        candidates = [node for node in nodes if not node.draining]
    fitting = [node for node in candidates if room(node) >= count]
    if not fitting:
        raise PlacementError(
            "INSUFFICIENT_GPU_MEMORY", f"{count} free GPU(s) on one node needed; " + ("; ".join(
                f"{node.name}: {room(node)} of {node.gpus} free" + (" (draining)" if node.draining else "")
                for node in nodes) or "the cluster has no node"), 409,
            {"gpu_count": count, "nodes": [{"node": node.name, "gpus": node.gpus, "gpus_free": room(node),
                                            "draining": node.draining} for node in nodes]})
    if count == 0:
        return min(fitting, key=lambda node: (node.deployments, node.name)).name
    return min(fitting, key=lambda node: (-room(node), node.name)).name
