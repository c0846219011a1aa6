"""PostgreSQL restarted under load: requests in the gap get 503 DATABASE_UNAVAILABLE, then everything serves again,
nothing lost (a download running across the gap completes, verified)."""

from __future__ import annotations

import hashlib
import threading
import time

import httpx
import pytest

from tests import world
from tests.downloads.conftest import BIG_SHA256
from tests.envelope import assert_success
from tests.postgres import PrivatePostgres
from tests.service import wait_for

pytestmark = pytest.mark.skipif(not PrivatePostgres.available(),
                                reason="needs root, the postgres user and PostgreSQL's server binaries")

LOAD_PATHS = ("/api/downloads/list", "/api/downloads/queue", "/v1/models", "/api/deployments/list")


class Load(threading.Thread):
    """Requests in a loop, bounded in count and time; every answer recorded as (path, status, body, headers)."""

    def __init__(self, url: str, max_requests: int = 3000, max_seconds: float = 60):
        super().__init__(daemon=True)
        self.url, self.max_requests, self.max_seconds = url, max_requests, max_seconds
        self.answers: list[tuple[str, int, dict, httpx.Headers]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for count in range(self.max_requests):
                if self.stopping.is_set() or time.monotonic() > deadline:
                    return
                path = LOAD_PATHS[count % len(LOAD_PATHS)]
                response = client.get(path)
                self.answers.append((path, response.status_code, response.json(), response.headers))
                time.sleep(0.02)


def test_postgresql_restarted_under_load(start_service, throttled):
    postgres = PrivatePostgres().init()
    try:
        service = start_service({"DATABASE_URL": postgres.url, "LLM_MANAGER_DOWNLOAD_PART_THRESHOLD_MB": "1",
                                 "LLM_MANAGER_DOWNLOAD_STALE_SECONDS": "3"})
        with service.client() as client:
            assert_success(client.post("/api/models/microsoft%2FDialoGPT-medium/favorite",
                                       json={"source": "huggingface"}), 201)
            task = assert_success(client.post("/api/downloads/start", json={"model_id": "test-org/big-model",
                                                                            "source": "huggingface"}))["task"]
            wait_for(lambda: assert_success(client.get(f"/api/downloads/{task['id']}"))["downloaded_bytes"]
                     > 1024 * 1024, 30, what="1 MiB downloaded")
            load = Load(service.url)
            load.start()
            time.sleep(0.5)
            postgres.stop()
            wait_for(lambda: any(status == 503 for _, status, _, _ in load.answers), 15, what="a 503 in the gap")
            time.sleep(1.0)
            postgres.start()
            wait_for(lambda: client.get("/api/downloads/list").status_code == 200, 30, what="serving again")
            time.sleep(1.0)
            load.stopping.set()
            load.join(timeout=30)

            statuses = {status for _, status, _, _ in load.answers}
            assert statuses == {200, 503}, statuses
            for path, status, body, headers in load.answers:
                if status != 503:
                    continue
                if path.startswith("/v1/"):  # OpenAI's error shape there
                    assert body["error"]["code"] == "DATABASE_UNAVAILABLE" and body["error"]["type"] == "server_error"
                else:
                    assert body["success"] is False and body["error"] == "DATABASE_UNAVAILABLE", body
                assert headers["Retry-After"].isdigit()
            # Served again, nothing lost: what was written before the gap is there; the download crossed it.
            assert load.answers[-1][1] == 200
            favorites = assert_success(client.get("/api/models/search", params={"favorite": "true"}))
            assert [m["id"] for m in favorites["items"]] == ["microsoft/DialoGPT-medium"]
            done = wait_for(lambda: (t := assert_success(client.get(f"/api/downloads/{task['id']}")))["status"]
                            in ("completed", "failed") and t, 90, what="the download to end")
            assert done["status"] == "completed", done
        blob = service.data_dir / "models/huggingface/hub/models--test-org--big-model/blobs" / BIG_SHA256
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == BIG_SHA256
        assert throttled.bytes_sent[BIG_SHA256] < len(world.BIG_WEIGHTS) * 1.5
        log = service.log()
        assert "Internal server error" not in log and "Unhandled error" not in log
        service.stop()
    finally:
        postgres.destroy()
