"""Shared by the engine benchmarks: a fake hub holding the tiny GGUF, and a service that has downloaded it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.engines import TINY_FILE, TINY_REPO, download  # noqa: E402
from tests.fakes.hub import FakeHub  # noqa: E402
from tests.fakes.tiny_gguf import write_tiny_gguf  # noqa: E402
from tests.service import Service  # noqa: E402


def start(work_dir: Path) -> tuple[FakeHub, Service, Path]:
    """(hub, service, path of the GGUF as the service stored it), the model downloaded and ready to deploy."""
    gguf = write_tiny_gguf(work_dir / TINY_FILE)
    hub = FakeHub().start()
    hub.add_repo(TINY_REPO, files={TINY_FILE: gguf.read_bytes()}, library_name="gguf")
    service = Service(work_dir / "service", env={
        "HF_ENDPOINT": hub.url, "LLM_MANAGER_LOG_LEVEL": "WARNING", "LLM_MANAGER_ENGINE_PORTS": "18300-18399",
        "LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB": "0.01"}).start()
    with service.client() as client:
        download(client, TINY_REPO)
    stored = next((work_dir / "service" / "models" / "huggingface" / "hub").rglob(f"snapshots/*/{TINY_FILE}"))
    return hub, service, stored


def wait(predicate, timeout: float = 60, interval: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark step timed out")
