"""System endpoints through the running service (real ASGI app under daphne, real worker cluster)."""

import time

from tests.envelope import assert_error, assert_success


def test_health_is_the_contracts_bare_shape(api):
    assert api.get("/health").json() == {"status": "healthy", "service": "llm-manager-api", "version": "1.0.0"}
    assert api.get("/api/health").json() == {"status": "healthy", "api_version": "v1", "service": "llm-manager-api"}


def test_resources_report_cpu_memory_disk_of_the_data_dir_and_gpus(api, service):
    data = assert_success(api.get("/api/system/resources"))
    assert data["cpu"]["cores"] >= 1 and 0 <= data["cpu"]["usage_percent"] <= 100
    memory = data["memory"]
    assert memory["total_gb"] > 0 and 0 < memory["available_gb"] <= memory["total_gb"]
    assert 0 <= memory["usage_percent"] <= 100
    disk = data["disk"]
    assert disk["path"] == str(service.data_dir)
    assert disk["total_gb"] > 0 and disk["free_gb"] <= disk["total_gb"]
    # This machine has no NVIDIA driver: an empty list, never an error.
    assert isinstance(data["gpus"], list)


def test_resources_never_wait_for_a_cpu_sampling_interval(api):
    started = time.monotonic()
    for _ in range(5):
        assert_success(api.get("/api/system/resources"))
    # A blocking psutil.cpu_percent(interval=1) would take 5 s here.
    assert time.monotonic() - started < 2.5


def test_load_reports_averages_per_core_processes_and_uptime(api):
    data = assert_success(api.get("/api/system/load"))
    assert set(data["load_average"]) == {"1m", "5m", "15m"}
    cores = data["cores"]
    assert abs(data["load_per_core"]["1m"] - data["load_average"]["1m"] / cores) < 0.02
    assert data["process_count"] > 1
    assert data["uptime_seconds"] > 0 and data["boot_time"] > 0


def test_system_health_checks_database_workers_disk_and_memory(api):
    data = assert_success(api.get("/api/system/health"))
    assert set(data["checks"]) == {"database", "workers", "disk", "memory"}
    assert data["checks"]["database"]["status"] == "healthy"
    # The worker cluster started beside the web server writes its heartbeat.
    assert data["checks"]["workers"]["status"] == "healthy", data["checks"]["workers"]
    assert data["status"] == "healthy"


def test_health_reports_degraded_when_disk_runs_low(start_service):
    service = start_service({"LLM_MANAGER_MIN_FREE_DISK_GB": "100000000"})
    with service.client() as client:
        data = client.get("/api/system/health").json()["data"]
    assert data["checks"]["disk"]["status"] == "degraded"
    assert data["status"] in {"degraded", "unhealthy"}


def test_health_reports_unhealthy_without_a_worker_cluster(start_service):
    service = start_service(args=["--no-worker"])
    with service.client() as client:
        data = client.get("/api/system/health").json()["data"]
    assert data["checks"]["workers"]["status"] == "unhealthy"
    assert data["status"] == "unhealthy"


CONTRACT_PATHS = [
    "/health", "/api/health", "/api/system/resources", "/api/system/load", "/api/system/health",
    "/api/models/search", "/api/models/{model_id}/info", "/api/models/categories", "/api/models/trending",
    "/api/models/stats", "/api/models/{model_id}/favorite", "/api/models/sync",
    "/api/downloads/start", "/api/downloads/{task_id}/pause", "/api/downloads/{task_id}/resume",
    "/api/downloads/{task_id}/cancel", "/api/downloads/{task_id}", "/api/downloads/list", "/api/downloads/queue",
    "/api/downloads/storage",
    "/api/deployments/start", "/api/deployments/{deployment_id}/stop", "/api/deployments/{deployment_id}/restart",
    "/api/deployments/{deployment_id}", "/api/deployments/list", "/api/deployments/{deployment_id}/logs",
    "/api/deployments/{deployment_id}/health", "/api/deployments/{deployment_id}/model-info",
    "/api/chat/{deployment_id}", "/api/completions/{deployment_id}",
    "/v1/models", "/v1/chat/completions", "/v1/completions",
]


def test_openapi_schema_and_docs_list_every_endpoint_of_the_contract(api):
    schema = api.get("/api/schema/", params={"format": "json"})
    assert schema.status_code == 200, schema.text[:500]
    document = schema.json()
    assert document["openapi"].startswith("3.")
    missing = [path for path in CONTRACT_PATHS if path not in document["paths"]]
    assert not missing
    start = document["paths"]["/api/downloads/start"]["post"]
    assert "application/json" in start["requestBody"]["content"]
    assert {"2XX", "4XX"} <= set(start["responses"])
    docs = api.get("/api/docs/")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_without_a_cluster_the_one_node_is_this_machine(api):
    nodes = assert_success(api.get("/api/nodes"))
    assert nodes["count"] == 1 and nodes["nodes"][0]["id"] == "local"
    local = assert_success(api.get("/api/nodes/local"))
    assert local["alive"] and not local["draining"] and local["gpus"]["total"] == len(local["gpus"]["devices"])
    assert local["disk_free_bytes"] > 0 and local["cpus"] >= 1
    assert_error(api.get("/api/nodes/elsewhere"), 404, "NODE_NOT_FOUND")
    assert_error(api.put("/api/nodes/local/drain"), 400, "INVALID_ACTION")
    assert_error(api.put("/api/nodes/elsewhere/undrain"), 404, "NODE_NOT_FOUND")
