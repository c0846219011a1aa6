"""Prometheus metrics, through prometheus-client in its multiprocess mode: the web server and every worker process
write their counts to files under LLM_MANAGER_DATA_DIR/metrics (settings point PROMETHEUS_MULTIPROC_DIR there
before anything imports the library), and `/metrics` adds up every process's. Figures read from the database
(downloads, deployments, GPUs, the catalog) are collected when Prometheus scrapes, by the top app."""

from __future__ import annotations

from typing import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

HTTP_REQUESTS = Counter("llm_manager_http_requests", "HTTP requests answered, by route template, method and status",
                        ["route", "method", "status"])
HTTP_DURATION = Histogram("llm_manager_http_request_duration_seconds", "Time to answer an HTTP request (to the "
                          "response's start for streams)", ["route", "method"], buckets=LATENCY_BUCKETS)


def exposition(collectors: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """Every process's counts and `collectors`' figures, in Prometheus's text format, and its content type."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
