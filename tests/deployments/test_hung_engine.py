"""An engine that hangs without exiting (SIGSTOP): its health turns unhealthy within the probe's timeout, and after a
few failed probes in a row the worker cluster kills it and its restart policy starts it again."""

from __future__ import annotations

import signal
import time

import psutil

from tests.engines import deploy, download, wait_deployment
from tests.envelope import assert_success
from tests.service import wait_for


def test_a_stopped_engine_turns_unhealthy_then_is_restarted(start_service, engine_env, tiny_gguf):
    service = start_service(engine_env)
    with service.client(timeout=60) as client:
        download(client, "test-org/tiny-llama-GGUF")
        started = assert_success(deploy(client))
        running = wait_deployment(client, started["deployment_id"], {"running", "error"})
        assert running["status"] == "running", running
        hung = psutil.Process(running["pid"])
        hung.send_signal(signal.SIGSTOP)
        asked = time.monotonic()
        health = assert_success(client.get(f"/api/deployments/{started['deployment_id']}/health"))
        assert health["healthy"] is False and health["process_alive"] is True and health["probe"]["ok"] is False
        assert time.monotonic() - asked < 5  # the probe's own timeout, not the engine's silence, bounds it
        restarted = wait_for(lambda: (d := assert_success(client.get(f"/api/deployments/{started['deployment_id']}")))
                             ["restart_count"] == 1 and d["status"] == "running" and d, 60,
                             what="the hung engine to be replaced")
        assert restarted["pid"] != running["pid"]
        assert "stopped answering its readiness probe" in service.log()  # the supervisor said why
        psutil.wait_procs([hung], timeout=5)
        assert not hung.is_running() or hung.status() == psutil.STATUS_ZOMBIE
        chat = assert_success(client.post(f"/api/chat/{started['deployment_id']}", json={
            "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}))
        assert chat["choices"][0]["message"]["role"] == "assistant"
        assert_success(client.delete(f"/api/deployments/{started['deployment_id']}"))
