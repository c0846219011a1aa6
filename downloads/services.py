"""Download business logic: starting, pausing, resuming, cancelling and deleting downloads, and their storage.

A task moves pending → downloading → completed (or paused, cancelled, failed). Planning is in
`planning`, the queue of tasks waiting for a worker in `queue`, the worker's job in `jobs`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum

from catalog import services as catalog
from catalog.sources import SOURCES, InvalidModelId, RemoteModelGated, RemoteModelNotFound, SourceError
from core.api import ApiError
from core.audit import audited
from core.paths import InvalidFileName
from downloads import selectors, storage
from downloads.models import ACTIVE_DOWNLOAD_STATUSES, DownloadFile, DownloadStatus, DownloadTask
from downloads.planning import apply_plan, fetch_plan
from downloads.queue import dispatch_queue
from downloads.signals import model_files_removing
from downloads.transfer import PARTIAL_SUFFIX

ACTIONS = {
    "pause": (DownloadStatus.PENDING, DownloadStatus.DOWNLOADING),
    "resume": (DownloadStatus.PAUSED, DownloadStatus.FAILED),
    "cancel": ACTIVE_DOWNLOAD_STATUSES,
}


@audited("download.start", target="model_id", object_of=lambda result: result[0].id)
def start_download(*, model_id: str, source: str, revision: str = "", include: list[str] | None = None,
                   dispatch: bool = True) -> tuple[DownloadTask, bool]:
    """(task, created). An active or completed task for the same model, source and revision is returned as is.

    An id that cannot name a model of the source is refused at once (400 VALIDATION_ERROR). Without a revision the
    source's default is taken. With `dispatch`, the queue hands the new task to a worker; without, it stays pending
    for the caller.
    """
    adapter = catalog.source_of(source)
    model_id = catalog.canonical_id(model_id=model_id, source=source)  # `llama3.2` is `llama3.2:latest`
    revision = (revision or adapter.default_revision) if adapter.default_revision else ""
    include = sorted(set(include or []))
    same = DownloadTask.objects.filter(model_id=model_id, source=source, revision=revision, include=include)
    existing = same.filter(status__in=ACTIVE_DOWNLOAD_STATUSES).first() or same.filter(
        status=DownloadStatus.COMPLETED).order_by("-completed_at").first()
    if existing:
        return existing, False
    task = DownloadTask(model_id=model_id, source=source, revision=revision, include=include)
    try:
        plan = fetch_plan(task)
    except RemoteModelNotFound as exc:
        _record_failure(task, "MODEL_NOT_FOUND", str(exc))
        raise ApiError("MODEL_NOT_FOUND", str(exc), 404, {"task_id": task.id}) from None
    except RemoteModelGated as exc:
        _record_failure(task, "GATED_MODEL", str(exc))
        raise ApiError("GATED_MODEL", str(exc), 403, {"task_id": task.id}) from None
    except InvalidFileName as exc:
        _record_failure(task, "INVALID_FILE_NAME", str(exc))
        raise ApiError("INVALID_FILE_NAME", str(exc), 400, {"task_id": task.id}) from None
    except InvalidModelId as exc:  # a revision the source cannot have
        raise ApiError("VALIDATION_ERROR", f"revision: {exc}", 400) from None
    except SourceError:
        plan = None  # the worker plans it, with retries
    if plan is not None:
        apply_plan(task=task, plan=plan)
    else:
        task.save()
    if dispatch:
        dispatch_queue()
    task.refresh_from_db()
    return task, True


def _record_failure(task: DownloadTask, code: str, message: str) -> None:
    task.status, task.error_code, task.error = DownloadStatus.FAILED, code, message
    task.save()


@audited(lambda kwargs: f"download.{kwargs['action']}", target="task_id")
def act(*, task_id: str, action: str) -> DownloadTask:
    """pause | resume | cancel, when the task's status allows it (else INVALID_ACTION)."""
    with transaction.atomic():
        task = selectors.get_task(task_id)
        refuse_node_task(task)
        if task.status not in ACTIONS[action]:
            raise ApiError("INVALID_ACTION", f"Cannot {action} a task that is {task.status}", 400)
        if action == "pause":
            task.status, task.speed_bps, task.eta_seconds = DownloadStatus.PAUSED, 0, None
        elif action == "resume":
            task.status, task.error, task.error_code = DownloadStatus.PENDING, "", ""
        else:
            task.status, task.speed_bps, task.eta_seconds = DownloadStatus.CANCELLED, 0, None
        task.save()
    if action == "cancel":
        storage.remove_partial_files(task)
    dispatch_queue()
    task.refresh_from_db()
    return task


def refuse_node_task(task: DownloadTask) -> None:
    if task.node:
        raise ApiError("INVALID_ACTION", f"{task.id} is node {task.node}'s fetch of {task.model_id} for a deployment: "
                       "it follows the deployment (stop or delete that)", 400)


@audited("download.delete", target="task_id")
def delete_task(*, task_id: str, delete_files: bool, delete_imported: bool = False) -> dict:
    """Delete a task (cancelling it first if active); with `delete_files`, the files it put in place too, unless a
    deployment uses the model (MODEL_IN_USE) or another download holds them. The files of an imported model were
    not put there by the service: they go only with `delete_imported` as well."""
    task = selectors.get_task(task_id)
    refuse_node_task(task)
    delete_files = delete_files and (delete_imported or not task.imported)
    if delete_files:
        model_files_removing.send(sender=DownloadTask, source=task.source, model_id=task.model_id)
    if task.status in ACTIVE_DOWNLOAD_STATUSES:
        act(task_id=task_id, action="cancel")
    removed = []
    if delete_files:
        adapter = catalog.source_of(task.source)
        removed = adapter.remove(model=selectors.stored_model(task), in_use=_held_by_others(task))
    with transaction.atomic():
        task.delete()
        _record_latest_completed(source=task.source, model_id=task.model_id)
    return {"id": task_id, "deleted_files": removed}


def _held_by_others(task: DownloadTask) -> Callable[[Path], bool]:
    """Whether another task's files (or its storage path) lie at or under a path."""
    other_files = DownloadFile.objects.exclude(task=task)
    other_tasks = DownloadTask.objects.exclude(id=task.id)

    def in_use(path: Path) -> bool:
        name = str(path)
        return (other_files.filter(Q(destination=name) | Q(destination__startswith=f"{name}/")).exists()
                or other_tasks.filter(Q(storage_path=name) | Q(storage_path__startswith=f"{name}/")).exists())

    return in_use


def _record_latest_completed(*, source: str, model_id: str) -> None:
    """The catalog's record of a downloaded model follows the latest completed task of it (none: not downloaded)."""
    latest = selectors.latest_completed(source=source, model_id=model_id)
    if latest is None:
        catalog.forget_downloaded(model_id=model_id, source=source)
    else:
        catalog.record_downloaded(model=selectors.stored_model(latest), total_bytes=latest.total_bytes,
                                  download_task_id=latest.id)


def storage_state() -> dict:
    usage = shutil.disk_usage(settings.DATA_DIR)
    completed = DownloadTask.objects.filter(status=DownloadStatus.COMPLETED)
    per_source = {name: completed.filter(source=name).aggregate(total=Sum("total_bytes"))["total"] or 0
                  for name in SOURCES}
    per_model = [{"model_id": row["model_id"], "source": row["source"], "bytes": row["total"]}
                 for row in completed.values("model_id", "source").annotate(total=Sum("total_bytes")).order_by("-total")]
    partial = sum(path.stat().st_blocks * 512 for path in settings.MODELS_DIR.rglob(f"*{PARTIAL_SUFFIX}"))
    return {"disk": {"path": str(settings.DATA_DIR), "total_bytes": usage.total, "used_bytes": usage.used,
                     "free_bytes": usage.free},
            "models_dir": str(settings.MODELS_DIR), "by_source": per_source, "by_model": per_model,
            "partial_bytes": partial}
