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
        # A GPU of unknown memory (a cluster node's GPU that only Ray counts, total 0) fits by count alone.
        return gpu.total_bytes == 0 or gpu.free_bytes >= needed_on(gpu, reserve_fraction=reserve_fraction,
                                                                   bytes_per_gpu=bytes_per_gpu)

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
    """A cluster node as placement sees it: its GPUs that no deployment holds (with their memory where its agent
    read it through NVML, else total 0: Ray's count alone), how many it has, and its deployments."""

    name: str
    gpus: int
    free_gpus: tuple[Gpu, ...]
    deployments: int
    draining: bool = False


def choose_node(nodes: list[NodeRoom], *, count: int, requested: str | None = None, reserve_fraction: float = 0.0,
                bytes_per_gpu: int = 0) -> str:
    """The node a deployment of `count` GPUs (all on one node) goes to: `requested` (it must exist, not be draining
    and have room), else, of the nodes where `place` finds `count` GPUs with room, the one with the most free GPUs
    (for a CPU engine: the fewest deployments), then by name. PlacementError otherwise (400 unknown node, 409
    draining or no room)."""
    by_name = {node.name: node for node in nodes}

    def fits(node: NodeRoom) -> bool:
        try:
            place(list(node.free_gpus), count=count, reserve_fraction=reserve_fraction, bytes_per_gpu=bytes_per_gpu)
            return True
        except PlacementError:
            return False

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
    fitting = [node for node in candidates if fits(node)]
    if not fitting:
        figures = [{"node": node.name, "gpus": node.gpus, "gpus_free": len(node.free_gpus),
                    "draining": node.draining,
                    "free_bytes": [gpu.free_bytes for gpu in node.free_gpus if gpu.total_bytes],
                    "needed_bytes": [needed_on(gpu, reserve_fraction=reserve_fraction, bytes_per_gpu=bytes_per_gpu)
                                     for gpu in node.free_gpus if gpu.total_bytes]} for node in nodes]
        raise PlacementError(
            "INSUFFICIENT_GPU_MEMORY", f"{count} GPU(s) with room on one node needed; " + ("; ".join(
                f"{entry['node']}: {entry['gpus_free']} of {entry['gpus']} free"
                + (f" (free bytes {entry['free_bytes']}, needed {entry['needed_bytes']})" if entry["free_bytes"]
                   else "") + (" (draining)" if entry["draining"] else "") for entry in figures)
                or "the cluster has no node"), 409, {"gpu_count": count, "nodes": figures})
    if count == 0:
        return min(fitting, key=lambda node: (node.deployments, node.name)).name
    return min(fitting, key=lambda node: (-len(node.free_gpus), node.name)).name


def spread_over_nodes(nodes: list[NodeRoom], *, count: int, reserve_fraction: float = 0.0,
                      bytes_per_gpu: int = 0) -> list[tuple[str, int]]:
    """For a deployment bigger than any one node (vLLM's Ray executor): (node, GPUs) pairs covering `count` GPUs
    with room on as few nodes as may be, the nodes with the most such GPUs first. PlacementError (409) when the
    nodes that are not draining have too few."""
    def usable(node: NodeRoom) -> int:
        return sum(1 for gpu in node.free_gpus if gpu.total_bytes == 0 or gpu.free_bytes >= needed_on(
            gpu, reserve_fraction=reserve_fraction, bytes_per_gpu=bytes_per_gpu))

    ranked = sorted(((node.name, usable(node)) for node in nodes if not node.draining), key=lambda p: (-p[1], p[0]))
    spread, left = [], count
    for name, room in ranked:
        if left <= 0 or room == 0:
            break
        spread.append((name, min(room, left)))
        left -= min(room, left)
    if left > 0:
        raise PlacementError("INSUFFICIENT_GPU_MEMORY", f"{count} GPU(s) with room needed across the cluster; its "
                             f"nodes have {count - left}", 409,
                             {"gpu_count": count, "nodes": [{"node": name, "gpus_usable": room}
                                                           for name, room in ranked]})
    return spread
