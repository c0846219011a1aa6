"""Settings kept in a `.env` file, a bad setting stopping the service with one line, and JSON logs with request ids."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from tests.envelope import assert_error, assert_success
from tests.service import REPO_ROOT, wait_for


def test_a_dotenv_in_the_data_dir_is_read_and_the_environment_wins(start_service, tmp_path):
    data_dir = tmp_path / "service0"
    data_dir.mkdir()
    (data_dir / ".env").write_text("LLM_MANAGER_API_KEY=from-the-file\nLLM_MANAGER_MIN_FREE_DISK_GB=123456\n")
    service = start_service({"LLM_MANAGER_MIN_FREE_DISK_GB": "0.001"})
    assert service.data_dir == data_dir
    with service.client() as client:
        assert_error(client.get("/api/downloads/list"), 401, "UNAUTHORIZED")
        keyed = client.get("/api/system/health", headers={"Authorization": "Bearer from-the-file"})
        # The environment's disk threshold won over the file's.
        assert assert_success(keyed)["checks"]["disk"]["status"] == "healthy"


def _serve(env: dict, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "manage.py"), "serve"], cwd=tmp_path,
                          env={**env, "LLM_MANAGER_DATA_DIR": str(tmp_path / "data")}, capture_output=True,
                          text=True, timeout=60)


def test_a_bad_setting_stops_the_service_at_once_with_one_line(tmp_path, sources_env):
    import os

    env = {**os.environ, **sources_env}
    cases = {
        "LLM_MANAGER_PORT": ("http", "LLM_MANAGER_PORT: 'http' is not a whole number"),
        "LLM_MANAGER_DOWNLOAD_PARTS": ("4.5", "LLM_MANAGER_DOWNLOAD_PARTS: '4.5' is not a whole number"),
        "LLM_MANAGER_LOG_FORMAT": ("xml", "LLM_MANAGER_LOG_FORMAT: 'xml' is not one of plain, json"),
        "LLM_MANAGER_ENGINE_PORTS": ("9000", "LLM_MANAGER_ENGINE_PORTS: '9000' is not a range of ports"),
        "LLM_MANAGER_OFFLINE": ("maybe", "LLM_MANAGER_OFFLINE: 'maybe' is not true or false"),
        "DATABASE_URL": ("mysql://x/y", "DATABASE_URL: unsupported scheme 'mysql'"),
    }
    for name, (value, message) in cases.items():
        result = _serve({**env, name: value}, tmp_path)
        assert result.returncode == 2, (name, result.stderr)
        assert result.stderr.strip().startswith(f"llm-manager: {message}"), (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    unreachable = _serve({**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}, tmp_path)
    assert unreachable.returncode == 2 and "DATABASE_URL: the database does not answer" in unreachable.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _serve({**env, "LLM_MANAGER_PORT": str(port)}, tmp_path)
    assert busy.returncode == 2 and f"LLM_MANAGER_PORT: 127.0.0.1:{port} cannot be bound" in busy.stderr
    (tmp_path / "readonly").mkdir(mode=0o500)
    unwritable = _serve({**env, "LLM_MANAGER_DATA_DIR": str(tmp_path / "readonly" / "data")}, tmp_path)
    if os.geteuid() != 0:  # root writes anywhere
        assert unwritable.returncode == 2 and "LLM_MANAGER_DATA_DIR" in unwritable.stderr


def test_json_logs_carry_request_ids_routes_and_task_ids(start_service, tmp_path):
    service = start_service({"LLM_MANAGER_LOG_FORMAT": "json", "LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB": "0.01"})
    with service.client() as client:
        answer = client.get("/api/downloads/list", headers={"X-Request-ID": "req-123"})
        assert answer.headers["X-Request-ID"] == "req-123"
        made = client.get("/api/system/load").headers["X-Request-ID"]
        assert len(made) == 32
        assert client.get("/admin/login/").headers["X-Request-ID"]
        task = assert_success(client.post("/api/downloads/start", json={"model_id": "microsoft/DialoGPT-medium",
                                                                       "source": "huggingface"}))["task"]
        wait_for(lambda: assert_success(client.get(f"/api/downloads/{task['id']}"))["status"] == "completed", 60,
                 what="the download")
    service_log = service.data_dir / "logs" / "service.log"

    def records() -> list[dict]:
        return [json.loads(line) for line in service_log.read_text().splitlines()]  # every line is JSON

    wait_for(lambda: any(r.get("request_id") == "req-123" for r in records()), 10, what="the access record")
    access = next(r for r in records() if r.get("request_id") == "req-123")
    assert access["logger"] == "llm_manager.requests" and access["level"] == "INFO"
    assert access["route"] == "api/downloads/list" and access["status"] == 200 and access["method"] == "GET"
    assert access["duration_ms"] >= 0 and access["time"].endswith("+00:00")
    assert any(r.get("request_id") == made for r in records())
    wait_for(lambda: any(r.get("task_id") == task["id"] for r in records()), 10, what="the worker's record")
    done = next(r for r in records() if r.get("task_id") == task["id"])
    assert "downloaded and verified" in done["message"] and done["logger"] == "downloads.jobs"
    # The console's log lines (stdout and stderr of serve) are JSON too.
    for line in service.log().splitlines():
        if line.startswith("{"):
            json.loads(line)
    assert not [line for line in service.log().splitlines() if " - - [" in line]  # no daphne plain access lines


def test_plain_logs_name_the_request(start_service):
    service = start_service()
    with service.client() as client:
        assert client.get("/api/system/load", headers={"X-Request-ID": "plain-7"}).headers["X-Request-ID"] == "plain-7"
    service_log = service.data_dir / "logs" / "service.log"
    wait_for(lambda: "[request_id=plain-7]" in service_log.read_text(), 10, what="the access line")
    line = next(line for line in service_log.read_text().splitlines() if "[request_id=plain-7]" in line)
    assert " INFO llm_manager.requests GET /api/system/load 200 " in line
