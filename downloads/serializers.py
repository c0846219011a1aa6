"""The public shape of download tasks, and the contract's way of writing sizes and durations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.api import utc_timestamp
from downloads.models import DownloadTask


def human_size(num_bytes: float) -> str:
    """`500MB`, `1.1GB`: the contract's way of writing sizes."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(num_bytes) < 1024 or unit == "TB":
            text = f"{num_bytes:.1f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
        num_bytes /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    seconds = int(round(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _timestamp(moment: datetime | None) -> str | None:
    return utc_timestamp(moment) if moment else None


def task_to_dict(task: DownloadTask, with_files: bool = True) -> dict[str, Any]:
    data = {
        "id": task.id,
        "model_id": task.model_id,
        "source": task.source,
        "revision": task.revision,
        "include": task.include,
        "imported": task.imported,
        "node": task.node or None,
        "storage_path": task.storage_path or None,
        "status": task.status,
        "progress": task.progress,
        "downloaded_size": human_size(task.downloaded_bytes),
        "total_size": human_size(task.total_bytes),
        "speed": f"{human_size(task.speed_bps)}/s",
        "eta": human_duration(task.eta_seconds),
        "downloaded_bytes": task.downloaded_bytes,
        "total_bytes": task.total_bytes,
        "speed_bytes_per_second": round(task.speed_bps, 1),
        "eta_seconds": task.eta_seconds,
        "error": task.error or None,
        "error_code": task.error_code or None,
        "created_at": _timestamp(task.created_at),
        "updated_at": _timestamp(task.updated_at),
        "started_at": _timestamp(task.started_at),
        "completed_at": _timestamp(task.completed_at),
    }
    if with_files:
        data["files"] = [
            {
                "path": f.path,
                "size": f.size,
                "downloaded_bytes": f.downloaded_bytes,
                "status": f.status,
                "sha256": f.sha256 or None,
                "error": f.error or None,
            }
            for f in task.files.all()
        ]
    return data
