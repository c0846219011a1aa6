from __future__ import annotations

import pytest

from tests.service import Service


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Service:
    """The service as the README starts it, shared by the tests that only read from it."""
    instance = Service(tmp_path_factory.mktemp("service")).start()
    yield instance
    instance.stop()


@pytest.fixture
def api(service):
    with service.client() as client:
        yield client


@pytest.fixture
def start_service(tmp_path):
    """Start a service of the test's own with extra environment; stopped at the end of the test."""
    started: list[Service] = []

    def start(env: dict[str, str] | None = None, **kwargs) -> Service:
        instance = Service(tmp_path / f"service{len(started)}", env=env, **kwargs).start()
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()
