"""Probes of the host and the service's infrastructure: CPU, memory, disk and GPUs (psutil, NVML), the database,
the worker cluster. Nothing here knows the apps above; no call blocks to sample."""

from __future__ import annotations

import time
from typing import Any

import psutil
from django.conf import settings
from django.db import connection

from core.gpus import GB, gb, gpu_stats


def resources() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(settings.DATA_DIR))
    return {
        "cpu": {"usage_percent": psutil.cpu_percent(interval=None), "cores": psutil.cpu_count() or 1},
        "memory": {
            "total_gb": gb(memory.total),
            "used_gb": gb(memory.total - memory.available),
            "available_gb": gb(memory.available),
            "usage_percent": memory.percent,
        },
        "disk": {
            "path": str(settings.DATA_DIR),
            "total_gb": gb(disk.total),
            "used_gb": gb(disk.used),
            "free_gb": gb(disk.free),
            "usage_percent": disk.percent,
        },
        "gpus": gpu_stats(),
    }


def load() -> dict[str, Any]:
    cores = psutil.cpu_count() or 1
    one, five, fifteen = psutil.getloadavg()
    boot_time = psutil.boot_time()
    return {
        "load_average": {"1m": round(one, 2), "5m": round(five, 2), "15m": round(fifteen, 2)},
        "load_per_core": {"1m": round(one / cores, 2), "5m": round(five / cores, 2), "15m": round(fifteen / cores, 2)},
        "cores": cores,
        "process_count": len(psutil.pids()),
        "boot_time": boot_time,
        "uptime_seconds": int(time.time() - boot_time),
    }


def _check(ok: bool, detail: str, failing: str = "unhealthy") -> dict[str, str]:
    return {"status": "healthy" if ok else failing, "detail": detail}


def _database_check() -> dict[str, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return _check(True, f"{connection.vendor} reachable")
    except Exception as exc:
        return _check(False, f"database unreachable: {exc}")


def worker_clusters() -> list[dict[str, Any]]:
    """The django-q2 clusters whose heartbeat (a Stat saved every cycle, kept 3 s) is fresh."""
    from django_q.status import Stat

    try:
        stats = Stat.get_all()
    except Exception:
        return []
    return [
        {"cluster_id": str(stat.cluster_id), "status": stat.status, "workers": len(stat.workers)}
        for stat in stats
        if stat.status != "Stopped"
    ]


def _workers_check() -> dict[str, str]:
    clusters = worker_clusters()
    if not clusters:
        return _check(False, "no worker cluster heartbeat in the last 3 seconds")
    workers = sum(cluster["workers"] for cluster in clusters)
    return _check(True, f"{len(clusters)} cluster(s), {workers} worker process(es)")


def _disk_check() -> dict[str, str]:
    free_gb = psutil.disk_usage(str(settings.DATA_DIR)).free / GB
    minimum = settings.HEALTH_MIN_FREE_DISK_GB
    return _check(free_gb >= minimum, f"{free_gb:.2f} GB free in the data dir (minimum {minimum} GB)", "degraded")


def _memory_check() -> dict[str, str]:
    available_gb = psutil.virtual_memory().available / GB
    minimum = settings.HEALTH_MIN_AVAILABLE_MEMORY_GB
    return _check(available_gb >= minimum, f"{available_gb:.2f} GB available (minimum {minimum} GB)", "degraded")


def health() -> dict[str, Any]:
    """Overall status: unhealthy if the database or workers fail, degraded if disk or memory run low."""
    checks = {
        "database": _database_check(),
        "workers": _workers_check(),
        "disk": _disk_check(),
        "memory": _memory_check(),
    }
    statuses = {check["status"] for check in checks.values()}
    overall = "unhealthy" if "unhealthy" in statuses else "degraded" if "degraded" in statuses else "healthy"
    return {"status": overall, "checks": checks}


def refresh_query_planner_statistics() -> None:
    """Let SQLite's planner know the tables' shapes (ANALYZE, sampled so it stays fast on big catalogs)."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA analysis_limit=1000")
            cursor.execute("ANALYZE")
