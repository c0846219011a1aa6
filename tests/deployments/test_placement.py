"""GPU placement: the one pure function over an inventory, on machines of 0, 1, 4 and 8 GPUs, mixed sizes, partly
used; then what the API and the engine's launch make of it on this machine (which has no GPU)."""

from __future__ import annotations

import pytest

from deployments.placement import Gpu, NodeRoom, PlacementError, choose_node, place, spread_over_nodes
from tests.engines import TINY_REPO, deploy, download, wait_deployment
from tests.envelope import assert_error, assert_success

GIB = 1024**3


def gpus(*free_and_total: tuple[float, float]) -> list[Gpu]:
    return [Gpu(index=index, name=f"GPU {index}", total_bytes=int(total * GIB), free_bytes=int(free * GIB))
            for index, (free, total) in enumerate(free_and_total)]


def test_no_gpu_machine():
    assert place([], count=0) == []
    with pytest.raises(PlacementError) as asked:
        place([], count=1)
    assert asked.value.code == "VALIDATION_ERROR" and asked.value.http_status == 400
    with pytest.raises(PlacementError) as named:
        place([], count=0, requested=[0])
    assert named.value.code == "VALIDATION_ERROR" and "it has none" in named.value.message


def test_one_gpu_fits_by_vllm_share_of_its_total():
    one = gpus((70, 80))
    assert place(one, count=1, reserve_fraction=0.85) == [0]  # 68 GiB reserved, 70 free
    with pytest.raises(PlacementError) as full:
        place(one, count=1, reserve_fraction=0.9)  # 72 GiB reserved, 70 free
    assert full.value.code == "INSUFFICIENT_GPU_MEMORY" and full.value.http_status == 409
    assert full.value.details["gpus"] == [{"gpu": 0, "name": "GPU 0", "free_bytes": 70 * GIB,
                                           "needed_bytes": int(80 * GIB * 0.9)}]
    # llama.cpp takes about the model's share, not a fraction of the GPU.
    assert place(one, count=1, bytes_per_gpu=60 * GIB) == [0]
    with pytest.raises(PlacementError):
        place(one, count=1, bytes_per_gpu=71 * GIB)


def test_four_mixed_partly_used_gpus_take_the_most_free_that_fit():
    four = gpus((20, 24), (75, 80), (10, 80), (40, 48))  # GPU 2 is mostly taken by another engine
    assert place(four, count=1, reserve_fraction=0.5) == [1]
    assert place(four, count=2, reserve_fraction=0.5) == [1, 3]
    assert place(four, count=3, reserve_fraction=0.5) == [0, 1, 3]
    with pytest.raises(PlacementError) as short:  # GPU 2 has 10 GiB free but would reserve 40
        place(four, count=4, reserve_fraction=0.5)
    assert [f["gpu"] for f in short.value.details["gpus"]] == [0, 1, 2, 3]
    assert place(four, count=0, reserve_fraction=0.5) == []  # a CPU engine
    assert place(four, count=1, requested=[3], reserve_fraction=0.5) == [3]
    with pytest.raises(PlacementError) as taken:
        place(four, count=1, requested=[2], reserve_fraction=0.5)
    assert taken.value.code == "INSUFFICIENT_GPU_MEMORY"
    for bad in ([4], [1, 1], [-1]):
        with pytest.raises(PlacementError) as wrong:
            place(four, count=1, requested=bad)
        assert wrong.value.code == "VALIDATION_ERROR"


def test_eight_gpus_tensor_parallel():
    eight = gpus(*[(79, 80)] * 6, (30, 80), (79, 80))
    assert place(eight, count=4, reserve_fraction=0.9) == [0, 1, 2, 3]
    assert place(eight, count=7, reserve_fraction=0.9) == [0, 1, 2, 3, 4, 5, 7]
    with pytest.raises(PlacementError):
        place(eight, count=8, reserve_fraction=0.9)
    with pytest.raises(PlacementError) as too_many:
        place(eight, count=9)
    assert too_many.value.code == "VALIDATION_ERROR" and "has 8" in too_many.value.message


def node(name: str, gpus: int, held: int = 0, deployments: int = 0, draining: bool = False,
         memory: tuple[float, float] | None = None) -> NodeRoom:
    """A node of `gpus` GPUs, the first `held` taken; `memory` (free, total GiB) each where its agent read it."""
    free, total = memory or (0, 0)
    return NodeRoom(name, gpus=gpus, free_gpus=tuple(
        Gpu(index=index, name=f"GPU {index}", total_bytes=int(total * GIB), free_bytes=int(free * GIB))
        for index in range(held, gpus)), deployments=deployments, draining=draining)


def test_a_cluster_node_is_chosen_by_free_gpus_then_name():
    nodes = [node("head", 0), node("b", 4, held=1, deployments=1), node("a", 2, deployments=2),
             node("c", 8, held=8, deployments=3)]
    assert choose_node(nodes, count=1) == "b"  # 3 free beats 2
    assert choose_node(nodes, count=3) == "b"
    assert choose_node(nodes, count=0) == "head"  # a CPU engine: the fewest deployments
    assert choose_node(nodes, count=2, requested="a") == "a"
    assert choose_node([node("y", 2), node("x", 2)], count=1) == "x"
    with pytest.raises(PlacementError) as full:
        choose_node(nodes, count=4)  # 8 GPUs on c, all held: GPUs of several nodes do not add up
    assert full.value.code == "INSUFFICIENT_GPU_MEMORY" and full.value.http_status == 409
    assert {entry["node"]: entry["gpus_free"] for entry in full.value.details["nodes"]} == {
        "head": 0, "b": 3, "a": 2, "c": 0}
    with pytest.raises(PlacementError) as unknown:
        choose_node(nodes, count=1, requested="z")
    assert unknown.value.http_status == 400 and unknown.value.details["nodes"] == ["a", "b", "c", "head"]
    with pytest.raises(PlacementError) as no_room_there:
        choose_node(nodes, count=1, requested="c")
    assert no_room_there.value.code == "INSUFFICIENT_GPU_MEMORY"
    with pytest.raises(PlacementError):
        choose_node([], count=0)


def test_a_cluster_node_whose_gpus_report_memory_must_have_room_on_them():
    # vLLM reserves 0.9 of each GPU's total: a node of 80 GiB GPUs with 40 GiB free cannot take it, one of 24 GiB
    # GPUs with all of it free can, though it has fewer free GPUs; memory not read (Ray's count alone) fits by count.
    nodes = [node("big-busy", 4, memory=(40, 80)), node("small-idle", 2, memory=(24, 24))]
    assert choose_node(nodes, count=1, reserve_fraction=0.9) == "small-idle"
    assert choose_node(nodes, count=1, bytes_per_gpu=30 * GIB) == "big-busy"
    with pytest.raises(PlacementError) as none:
        choose_node(nodes, count=1, reserve_fraction=0.9, requested="big-busy")
    entry = none.value.details["nodes"][0]
    assert entry["free_bytes"] == [40 * GIB] * 4 and entry["needed_bytes"] == [int(72 * GIB)] * 4
    assert "needed" in none.value.message
    assert choose_node([node("logical", 2)], count=2, reserve_fraction=0.9, bytes_per_gpu=GIB) == "logical"


def test_bigger_than_any_node_spreads_over_the_fewest_nodes():
    nodes = [node("a", 2), node("b", 4, held=1), node("c", 8, held=4), node("d", 8, draining=True)]
    assert spread_over_nodes(nodes, count=6) == [("c", 4), ("b", 2)]  # most usable GPUs first, fewest nodes
    assert spread_over_nodes(nodes, count=9) == [("c", 4), ("b", 3), ("a", 2)]
    with pytest.raises(PlacementError) as short:
        spread_over_nodes(nodes, count=10)  # 9 usable: the draining node's 8 do not count
    assert short.value.code == "INSUFFICIENT_GPU_MEMORY" and "have 9" in short.value.message
    # GPUs that report too little memory for vLLM's reserve are not usable.
    busy = [node("x", 4, memory=(10, 80)), node("y", 2, memory=(80, 80))]
    assert spread_over_nodes(busy, count=2, reserve_fraction=0.9) == [("y", 2)]
    with pytest.raises(PlacementError):
        spread_over_nodes(busy, count=3, reserve_fraction=0.9)


def test_a_draining_node_takes_nothing_new():
    nodes = [node("a", 2, draining=True), node("b", 1)]
    assert choose_node(nodes, count=1) == "b"
    with pytest.raises(PlacementError) as named:
        choose_node(nodes, count=1, requested="a")
    assert named.value.code == "NODE_DRAINING" and named.value.http_status == 409
    with pytest.raises(PlacementError) as two:
        choose_node(nodes, count=2)
    assert two.value.code == "INSUFFICIENT_GPU_MEMORY" and "(draining)" in two.value.message


def test_the_engine_sees_exactly_the_gpus_it_was_placed_on():
    from pathlib import Path

    from catalog.sources import ModelFiles
    from deployments.models import Deployment
    from deployments.supervisor import _launch

    model = ModelFiles("org/model", "huggingface", "safetensors", Path("/data/snap"), 10)
    deployment = Deployment(id="deploy_x", name="x", model_id="org/model", engine="vllm", port=8100, gpu_ids=[2, 5],
                            options={"tensor_parallel_size": 2}, env={"VLLM_LOGGING_LEVEL": "INFO"})
    launch = _launch(deployment, model)
    assert launch.env["CUDA_VISIBLE_DEVICES"] == "2,5" and launch.env["VLLM_LOGGING_LEVEL"] == "INFO"
    assert launch.argv[launch.argv.index("--tensor-parallel-size") + 1] == "2"
    on_cpu = _launch(Deployment(id="deploy_y", name="y", model_id="m", engine="llama.cpp", port=8101),
                     ModelFiles("m", "huggingface", "gguf", Path("/data/m.gguf"), 10))
    assert "CUDA_VISIBLE_DEVICES" not in on_cpu.env
    assert on_cpu.argv[on_cpu.argv.index("--n_gpu_layers") + 1] == "0"


def test_gpu_requests_on_a_machine_without_gpus(engine_env, start_service, tiny_gguf):
    service = start_service(engine_env)
    with service.client(timeout=60) as client:
        download(client, TINY_REPO)
        refused = assert_error(deploy(client, gpu_ids=[0]), 400, "VALIDATION_ERROR")
        assert refused["details"]["gpus"] == [] and "it has none" in refused["message"]
        assert "has 0" in assert_error(deploy(client, gpu_count=1), 400, "VALIDATION_ERROR")["message"]
        assert_error(deploy(client, env={"CUDA_VISIBLE_DEVICES": "0"}), 400, "VALIDATION_ERROR")
        assert "runs no cluster" in assert_error(deploy(client, node="w1"), 400, "VALIDATION_ERROR")["message"]
        for bad in ({"gpu_ids": []}, {"gpu_ids": ["zero"]}, {"gpu_count": -1}):
            assert_error(deploy(client, **bad), 400, "VALIDATION_ERROR")
        started = assert_success(deploy(client))
        running = wait_deployment(client, started["deployment_id"], {"running", "error"})
        assert running["status"] == "running" and running["gpu_ids"] == []  # llama.cpp on the CPU here
        assert running["node"] is None
        local = assert_success(client.get("/api/nodes/local"))
        assert [held["id"] for held in local["deployments"]] == [started["deployment_id"]]
        assert_success(client.delete(f"/api/deployments/{started['deployment_id']}"))
