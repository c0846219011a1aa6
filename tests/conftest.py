from __future__ import annotations

import pytest

from tests import world
from tests.fakes.hub import FakeHub
from tests.fakes.modelscope import FakeModelScope
from tests.fakes.ollama_library import FakeOllamaLibrary
from tests.fakes.registry import Registry, registry_available
from tests.service import Service


@pytest.fixture(scope="session")
def fake_hub() -> FakeHub:
    hub = world.populate_hub(FakeHub()).start()
    yield hub
    hub.stop()


@pytest.fixture
def throttled(fake_hub):
    """File bodies at 512 KiB/s a connection: the big model's four parts take about four seconds."""
    fake_hub.bytes_per_second = 512 * 1024
    fake_hub.bytes_sent.clear()
    yield fake_hub
    fake_hub.bytes_per_second = None


@pytest.fixture(scope="session")
def fake_modelscope() -> FakeModelScope:
    hub = FakeModelScope()
    world.populate_modelscope(hub)
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def fake_library() -> FakeOllamaLibrary:
    library = FakeOllamaLibrary(world.LIBRARY_MODELS).start()
    yield library
    library.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Registry | None:
    """Debian's docker-registry holding the Ollama models of `world`; None where it is not installed."""
    if not registry_available():
        yield None
        return
    instance = Registry(tmp_path_factory.mktemp("registry")).start()
    world.populate_registry(instance)
    yield instance
    instance.stop()


@pytest.fixture
def need_registry(registry) -> Registry:
    if registry is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    return registry


@pytest.fixture(scope="session")
def sources_env(fake_hub, fake_modelscope, fake_library, registry, tmp_path_factory) -> dict[str, str]:
    """Environment pointing the service at the loopback stand-ins for Hugging Face, ModelScope and Ollama, and its
    `import` at empty stores (never at this machine's own caches)."""
    empty = tmp_path_factory.mktemp("empty-stores")
    return {
        "HF_HUB_CACHE": str(empty / "huggingface"),
        "OLLAMA_MODELS": str(empty / "ollama"),
        "HF_ENDPOINT": fake_hub.url,
        "HF_TOKEN": "",
        "MODELSCOPE_ENDPOINT": fake_modelscope.url,
        "MODELSCOPE_API_TOKEN": "",
        "LLM_MANAGER_OLLAMA_LIBRARY": fake_library.url,
        "LLM_MANAGER_OLLAMA_REGISTRY": registry.url if registry else "http://127.0.0.1:9",
    }


@pytest.fixture(scope="session")
def service(tmp_path_factory, sources_env) -> Service:
    """The service as the README starts it, shared by the tests."""
    instance = Service(tmp_path_factory.mktemp("service"), env=sources_env).start()
    yield instance
    instance.stop()


@pytest.fixture
def api(service):
    with service.client() as client:
        yield client


@pytest.fixture
def start_service(tmp_path, sources_env):
    """Start a service of the test's own (extra environment on top of the sources'); stopped after the test."""
    started: list[Service] = []

    def start(env: dict[str, str] | None = None, **kwargs) -> Service:
        instance = Service(tmp_path / f"service{len(started)}", env={**sources_env, **(env or {})}, **kwargs).start()
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory, fake_hub):
    """A tiny random llama GGUF that llama.cpp loads, published on the fake hub as a GGUF repo."""
    pytest.importorskip("gguf", reason="the gguf package is not installed")
    from tests.engines import TINY_FILE, TINY_REPO
    from tests.fakes.tiny_gguf import write_tiny_gguf

    path = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / TINY_FILE)
    fake_hub.add_repo(TINY_REPO, files={TINY_FILE: path.read_bytes(), "README.md": b"# tiny"},
                      library_name="gguf", tags=["gguf"])
    return path


@pytest.fixture(scope="session")
def engine_env(sources_env):
    """A service environment for tests that run engines: their own port range, short timeouts."""
    return {**sources_env, "LLM_MANAGER_ENGINE_PORTS": "18100-18199", "LLM_MANAGER_ENGINE_STOP_GRACE": "3",
            "LLM_MANAGER_ENGINE_READY_TIMEOUT": "60", "LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB": "0.01"}
