"""The README's start command end to end, and the optional PostgreSQL and Redis back ends."""

import signal
import socket

import psutil
import pytest

from tests.postgres import scratch_database
from tests.service import REPO_ROOT, Service, wait_for


def workers_healthy(client) -> bool:
    return client.get("/api/system/health").json()["data"]["checks"]["workers"]["status"] == "healthy"


def test_start_script_serves_api_and_admin_and_stops_cleanly_on_sigterm(tmp_path):
    service = Service(tmp_path / "data", argv=["bash", str(REPO_ROOT / "scripts" / "serve.sh")]).start(timeout=300)
    try:
        with service.client() as client:
            resources = client.get("/api/system/resources")
            assert resources.status_code == 200 and resources.json()["data"]["memory"]["total_gb"] > 0
            login = client.get("/admin/login/")
            assert login.status_code == 200 and "LLM Manager" in login.text
            wait_for(lambda: workers_healthy(client), 30, what="the worker cluster's heartbeat")
        assert (tmp_path / "data" / "llm_manager.sqlite3").exists()
        tree = [psutil.Process(service.process.pid), *psutil.Process(service.process.pid).children(recursive=True)]
        # daphne, the cluster's sentinel and at least its two workers.
        assert len(tree) >= 4, [p.cmdline() for p in tree]
        assert "LLM Manager is starting on" in service.log()
    finally:
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=30) == 0
    _, alive = psutil.wait_procs(tree, timeout=5)
    assert not alive, [p.pid for p in alive]


def test_database_url_runs_the_service_on_postgresql(start_service):
    import psycopg

    with scratch_database() as url:
        service = start_service({"DATABASE_URL": url})
        with service.client() as client:
            health = client.get("/api/system/health").json()["data"]
            assert "postgresql reachable" in health["checks"]["database"]["detail"]
            wait_for(lambda: workers_healthy(client), 30, what="the worker cluster's heartbeat")
            assert client.get("/api/downloads/list").json()["data"]["pagination"]["total"] == 0
        with psycopg.connect(url) as connection:
            tables = {row[0] for row in connection.execute("SELECT tablename FROM pg_tables")}
        assert {"downloads_downloadtask", "deployments_deployment", "catalog_catalogmodel"} <= tables
        service.stop()


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_redis_url_carries_the_worker_heartbeat_and_websocket(start_service):
    if not _redis_answers():
        pytest.skip("no Redis answers on 127.0.0.1:6379")
    from websockets.sync.client import connect

    service = start_service({"REDIS_URL": "redis://127.0.0.1:6379/7"})
    try:
        with service.client() as client:
            wait_for(lambda: workers_healthy(client), 30, what="the worker cluster's heartbeat in Redis")
        with connect(service.url.replace("http://", "ws://") + "/ws/downloads", open_timeout=10) as ws:
            assert '"snapshot"' in ws.recv(timeout=10)
        import redis

        assert any(b"django_q" in key or b"llm_manager" in key for key in redis.Redis(db=7).keys())
    finally:
        service.stop()
        import redis

        redis.Redis(db=7).flushdb()
