"""The figures Prometheus scrapes from the database and the host, collected when it scrapes (every process's own
counts come from core.metrics' multiprocess files)."""

from __future__ import annotations

import socket
from typing import Iterator

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from catalog.models import CatalogModel
from catalog.search_index import INDEX
from core.gpus import gpu_stats
from deployments.engines import ENGINES
from deployments.models import Deployment, DeploymentStatus
from downloads.models import DownloadTask


class ServiceCollector(Collector):
    def collect(self) -> Iterator:
        node = socket.gethostname()
        downloads = GaugeMetricFamily("llm_manager_downloads", "Download tasks by source and status",
                                      labels=["source", "status"])
        for row in DownloadTask.objects.values("source", "status").annotate(n=Count("pk")):
            downloads.add_metric([row["source"], row["status"]], row["n"])
        yield downloads
        deployments = GaugeMetricFamily("llm_manager_deployments", "Deployments by engine and status",
                                        labels=["engine", "status"])
        for row in Deployment.objects.values("engine", "status").annotate(n=Count("pk")):
            deployments.add_metric([row["engine"], row["status"]], row["n"])
        yield deployments
        restarts = CounterMetricFamily("llm_manager_deployment_restarts", "Restarts of each deployment by its "
                                       "restart policy", labels=["deployment", "model", "engine"])
        for name, deployment_id, model, engine, count in Deployment.objects.values_list(
                "name", "id", "model_id", "engine", "restart_count"):
            restarts.add_metric([name or deployment_id, model, engine], count)
        yield restarts
        catalog = GaugeMetricFamily("llm_manager_catalog_models", "Models in the catalog by source", labels=["source"])
        for row in CatalogModel.objects.values("source").annotate(n=Count("pk")):
            catalog.add_metric([row["source"]], row["n"])
        yield catalog
        yield GaugeMetricFamily("llm_manager_search_index_documents", "Catalog entries in the web server's search "
                                "index, as of its last build (0 before the first)", value=INDEX.documents)
        gpus = gpu_stats()
        families = {
            "used": GaugeMetricFamily("llm_manager_gpu_memory_used_bytes", "GPU memory in use",
                                      labels=["node", "gpu", "name"]),
            "total": GaugeMetricFamily("llm_manager_gpu_memory_total_bytes", "GPU memory",
                                       labels=["node", "gpu", "name"]),
            "utilization": GaugeMetricFamily("llm_manager_gpu_utilization_ratio", "GPU busy share (0–1)",
                                             labels=["node", "gpu", "name"]),
        }
        for gpu in gpus:
            labels = [node, str(gpu["index"]), gpu["name"]]
            families["used"].add_metric(labels, gpu["memory_total_bytes"] - gpu["memory_free_bytes"])
            families["total"].add_metric(labels, gpu["memory_total_bytes"])
            families["utilization"].add_metric(labels, gpu["utilization_percent"] / 100)
        yield from families.values()


def engine_targets() -> list[dict]:
    """Prometheus HTTP service discovery: every running engine that serves its own metrics."""
    node = socket.gethostname()
    targets = []
    for deployment in Deployment.objects.filter(status=DeploymentStatus.RUNNING).order_by("created_at"):
        engine = ENGINES.get(deployment.engine)
        if engine is None or not engine.metrics_path:
            continue
        targets.append({"targets": [f"{deployment.host}:{deployment.port}"],
                        "labels": {"deployment": deployment.name or deployment.id, "model": deployment.model_id,
                                   "engine": deployment.engine, "node": node,
                                   "__metrics_path__": engine.metrics_path}})
    return targets
