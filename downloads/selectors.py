"""Download queries: tasks by id, state or change, and a task's files as a stored model."""

from __future__ import annotations

from datetime import datetime

from catalog.sources import StoredFile, StoredModel
from core.api import ApiError
from downloads.models import ACTIVE_DOWNLOAD_STATUSES, DownloadStatus, DownloadTask

SNAPSHOT_LIMIT = 1000  # the most tasks a live view's snapshot holds


def snapshot_tasks(*, task_id: str | None, everything: bool) -> list[DownloadTask]:
    """The tasks a live view starts from: unfinished ones, or every one (newest first, at most SNAPSHOT_LIMIT)."""
    tasks = DownloadTask.everywhere.all() if everything else DownloadTask.everywhere.filter(
        status__in=ACTIVE_DOWNLOAD_STATUSES)
    if task_id:
        tasks = tasks.filter(id=task_id)
    return list(tasks.order_by("-created_at").prefetch_related("files")[:SNAPSHOT_LIMIT])


def missing_tasks(task_ids: list[str]) -> list[str]:
    """Those of `task_ids` that no longer exist."""
    existing = set(DownloadTask.everywhere.filter(id__in=task_ids).values_list("id", flat=True))
    return [task_id for task_id in task_ids if task_id not in existing]


def tasks_changed_since(moment: datetime, task_id: str | None = None) -> list[DownloadTask]:
    tasks = DownloadTask.everywhere.filter(updated_at__gt=moment)
    if task_id:
        tasks = tasks.filter(id=task_id)
    return list(tasks.order_by("updated_at").prefetch_related("files"))


def get_task(task_id: str) -> DownloadTask:
    task = DownloadTask.everywhere.filter(id=task_id).first()
    if task is None:
        raise ApiError("TASK_NOT_FOUND", f"No download task {task_id}", 404)
    return task


def task_list(status: str | None = None):
    """Tasks, newest first, with their files."""
    found = DownloadTask.everywhere.order_by("-created_at").prefetch_related("files")
    return found.filter(status=status) if status else found


def tasks_of(*, source: str, model_id: str) -> list[DownloadTask]:
    return list(DownloadTask.objects.filter(source=source, model_id=model_id).order_by("created_at"))


def latest_completed(*, source: str, model_id: str) -> DownloadTask | None:
    return DownloadTask.objects.filter(source=source, model_id=model_id, status=DownloadStatus.COMPLETED).order_by(
        "-completed_at").first()


def stored_model(task: DownloadTask) -> StoredModel:
    """What the task put on disk, in the terms its source reads."""
    return StoredModel(model_id=task.model_id, source=task.source, revision=task.revision, commit=task.commit,
                       storage_path=task.storage_path, manifest=task.manifest,
                       files=[StoredFile(path=f.path, destination=f.destination, size=f.size, media_type=f.media_type)
                              for f in task.files.all()])
