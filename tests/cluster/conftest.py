"""A Ray cluster of a head and two GPU nodes on this machine, with its own PostgreSQL and Redis, and the service in
cluster mode on top: all inside the network namespace this pytest run was started in (scripts/test.sh runs
`unshare --net` with only loopback up), so every Ray process binds and reaches 127.0.0.1 and nothing else.

Ray's nodes have logical GPUs (`--num-gpus 2`): Ray accounts for them and sets CUDA_VISIBLE_DEVICES for what it
places exactly as on real GPUs; the llama.cpp engines run on the CPU whatever they are given.
"""

from __future__ import annotations

import time

import pytest

from tests.engines import TINY_REPO, download
from tests.postgres import PrivatePostgres
from tests.ray_cluster import Cluster, cluster_backing_services, in_private_network
from tests.service import Service, wait_for


def pytest_collection_modifyitems(config, items):
    if in_private_network():
        return
    skip = pytest.mark.skip(reason="the cluster tests start Ray, which only runs inside a network namespace of "
                                   "their own: scripts/test.sh runs them with unshare --net")
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    if not in_private_network():
        pytest.skip("Ray runs only inside a network namespace of its own")
    pytest.importorskip("ray", reason="pip install -r requirements-cluster.txt")
    instance = Cluster(tmp_path_factory.mktemp("cluster")).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def cluster_backing():
    """PostgreSQL and Redis of the cluster's own."""
    if not PrivatePostgres.available():
        pytest.skip("PostgreSQL's initdb, a postgres user and root are needed")
    with cluster_backing_services() as env:
        yield env


@pytest.fixture(scope="session")
def cluster_env(cluster, cluster_backing, engine_env) -> dict[str, str]:
    return {**engine_env, **cluster_backing, "LLM_MANAGER_RAY_ADDRESS": cluster.address,
            "LLM_MANAGER_NODE_IP": "127.0.0.1", "LLM_MANAGER_SHARED_STORAGE": "true",
            "LLM_MANAGER_ENGINE_STOP_GRACE": "2"}


@pytest.fixture(scope="session")
def cluster_service(tmp_path_factory, cluster_env, tiny_gguf):
    """The service in cluster mode, with the tiny model downloaded (its models/ is what the nodes read)."""
    service = Service(tmp_path_factory.mktemp("cluster-service"), env=cluster_env).start(timeout=180)
    with service.client(timeout=60) as client:
        download(client, TINY_REPO)
    yield service
    service.stop()


def wait_until(predicate, timeout: float, what: str):
    started = time.monotonic()
    value = wait_for(predicate, timeout, interval=0.2, what=what)
    return value, time.monotonic() - started
