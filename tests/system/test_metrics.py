"""Metrics through a real Prometheus (Debian's `prometheus`), scraping the service with its key and discovering
engines through the service's http_sd endpoint: after some traffic its HTTP API returns the series, from the web
server and from the worker processes alike."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import httpx
import pytest

from tests.engines import TINY_REPO, deploy, download, wait_deployment
from tests.envelope import assert_error, assert_success
from tests.service import REPO_ROOT, free_port, wait_for

PROMETHEUS = shutil.which("prometheus")
KEY = "metrics-test-key"


@pytest.fixture
def prometheus(tmp_path):
    if PROMETHEUS is None:
        pytest.skip("Debian's prometheus is not installed (apt-get install prometheus)")
    port = free_port()
    started: list[subprocess.Popen] = []

    def start(service_url: str, key: str) -> str:
        host_port = service_url.removeprefix("http://")
        (tmp_path / "key").write_text(key)
        (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: llm-manager
    metrics_path: /metrics
    authorization: {{credentials_file: {tmp_path / 'key'}}}
    static_configs: [{{targets: ["{host_port}"]}}]
  - job_name: engines
    authorization: {{credentials_file: {tmp_path / 'key'}}}
    http_sd_configs:
      - url: {service_url}/api/metrics/targets
        refresh_interval: 2s
        authorization: {{credentials_file: {tmp_path / 'key'}}}
""")
        log = open(tmp_path / "prometheus.log", "wb")
        started.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{url}/-/ready"), 30, what="prometheus")
        return url

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


# Exported only where NVML finds GPUs (not on the test machines).
GPU_SERIES = {"llm_manager_gpu_memory_used_bytes", "llm_manager_gpu_memory_total_bytes",
              "llm_manager_gpu_utilization_ratio"}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _query(prometheus_url: str, expression: str) -> list[dict]:
    answer = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expression}, timeout=10).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def _value(prometheus_url: str, expression: str, timeout: float = 30) -> float:
    """The expression's single value once Prometheus has it (and it is above zero)."""
    result = wait_for(lambda: (r := _query(prometheus_url, expression)) and float(r[0]["value"][1]) > 0 and r,
                      timeout, interval=0.5, what=f"prometheus to have {expression}")
    return float(result[0]["value"][1])


def test_prometheus_scrapes_every_process_of_the_service(start_service, engine_env, tiny_gguf, prometheus):
    service = start_service({**engine_env, "LLM_MANAGER_API_KEY": KEY})
    auth = {"Authorization": f"Bearer {KEY}"}
    with service.client(timeout=60, headers=auth) as client:
        download(client, TINY_REPO)  # its bytes are counted by a worker process, not the web server
        started = assert_success(deploy(client, name="tiny"))
        assert wait_deployment(client, started["deployment_id"], {"running", "error"})["status"] == "running"
        for _ in range(3):
            assert_success(client.post(f"/api/chat/{started['deployment_id']}",
                                       json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}))
        assert_error(client.get("/api/downloads/task_missing0"), 404, "TASK_NOT_FOUND")
        # One the engine refuses (a field passed on to it, of a type it does not take): an inference error.
        assert_error(client.post(f"/api/chat/{started['deployment_id']}", json={
            "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "logit_bias": "none"}), 502,
            "ENGINE_ERROR")
        text = client.get("/metrics").text
        assert KEY not in text  # keys never appear in metrics
    # The metrics need the key, like the API.
    assert_error(httpx.get(f"{service.url}/metrics", timeout=10), 401, "UNAUTHORIZED")
    assert httpx.get(f"{service.url}/api/metrics/targets", headers=auth, timeout=10).json() == []  # no vLLM here

    # Prometheus scrapes with a key of its own, which may do nothing else.
    scraper = service.create_key("prometheus", "--scopes", "metrics")
    assert_error(httpx.get(f"{service.url}/api/system/load", headers={"X-API-Key": scraper}), 403, "FORBIDDEN")
    url = prometheus(service.url, scraper)
    assert _value(url, 'llm_manager_http_requests_total{route="api/chat/<str:deployment_id>",method="POST",'
                       'status="200"}') == 3
    assert _value(url, 'llm_manager_http_requests_total{route="api/downloads/<str:task_id>",status="404"}') == 1
    assert _value(url, 'sum(llm_manager_http_request_duration_seconds_count{route="api/chat/<str:deployment_id>"})') \
        == 4
    assert _value(url, 'llm_manager_download_bytes_total{source="huggingface"}') >= tiny_gguf.stat().st_size
    assert _value(url, 'llm_manager_inference_requests_total{deployment="tiny",model="%s",key="LLM_MANAGER_API_KEY"}'
                  % TINY_REPO) == 4
    assert _value(url, 'llm_manager_inference_errors_total{deployment="tiny"}') == 1
    assert _value(url, 'llm_manager_inference_tokens_total{deployment="tiny",direction="prompt"}') >= 3
    assert _value(url, 'llm_manager_inference_first_token_seconds_count{deployment="tiny"}') == 4
    assert _value(url, 'llm_manager_deployments{engine="llama.cpp",status="running"}') == 1
    assert _value(url, 'llm_manager_downloads{source="huggingface",status="completed"}') == 1
    # Both jobs are up: the service's own, and the engines' discovered through the service (none serve metrics
    # here: llama-cpp-python has no /metrics; vLLM's would be listed).
    targets = httpx.get(f"{url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    assert [(t["labels"]["job"], t["health"]) for t in targets] == [("llm-manager", "up")]
    # The Grafana dashboard's every query parses and names only series the service exports.
    exported = set(re.findall(r"^(llm_manager_\w+?)(?:\{| )", text, re.MULTILINE))
    dashboard = json.loads((REPO_ROOT / "docs" / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(expressions) >= 8
    for expression in expressions:
        _query(url, expression.replace("$__rate_interval", "1m"))
        named = set(re.findall(r"llm_manager_\w+", expression))
        assert named and named <= exported | GPU_SERIES, (expression, named - exported)
    with service.client(timeout=60, headers=auth) as client:
        assert_success(client.delete(f"/api/deployments/{started['deployment_id']}"))
