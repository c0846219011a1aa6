import hashlib

import pytest

from tests import world


@pytest.fixture(scope="module")
def dl_service(tmp_path_factory, sources_env):
    """A service tuned for watching downloads: 1 MiB parts, quick retries, a short heartbeat timeout."""
    from tests.service import Service

    env = {
        **sources_env,
        "LLM_MANAGER_DOWNLOAD_PART_THRESHOLD_MB": "1",
        "LLM_MANAGER_DOWNLOAD_BACKOFF_SECONDS": "0.2",
        "LLM_MANAGER_DOWNLOAD_STALE_SECONDS": "3",
        "LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB": "0.01",
    }
    instance = Service(tmp_path_factory.mktemp("downloads"), env=env).start()
    yield instance
    instance.stop()


@pytest.fixture
def dl(dl_service):
    with dl_service.client() as client:
        yield client


BIG_SHA256 = hashlib.sha256(world.BIG_WEIGHTS).hexdigest()
DIALOGPT_SHA256 = hashlib.sha256(world.DIALOGPT_WEIGHTS).hexdigest()
