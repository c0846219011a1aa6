"""Download business logic: starting, queueing, pausing, resuming, cancelling and running downloads.

A task moves pending → downloading → completed (or paused, cancelled, failed). At most
MAX_CONCURRENT_DOWNLOADS tasks download at once; the others wait in FIFO order. A worker
job only transfers while it holds the task's lease; the job renews a heartbeat twice a
second, and a task whose heartbeat stops (a killed worker, a restart) is queued again and
continues from the bytes already on disk.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections import deque
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from catalog.services import SOURCES, validate_source
from catalog.sources import DownloadPlan, RemoteModelGated, RemoteModelNotFound, SourceError, huggingface, ollama
from downloads import storage
from downloads.models import ACTIVE_DOWNLOAD_STATUSES, DownloadFile, DownloadStatus, DownloadTask
from downloads.transfer import (
    FileTransfer,
    TransferFailed,
    TransferSettings,
    TransferStopped,
    checkpoint_path,
    file_digest,
    load_checkpoint,
    same_layout,
    split_into_parts,
)
from llm_manager.api import ApiError

logger = logging.getLogger(__name__)

PROGRESS_SECONDS = 0.5  # at most two progress writes a second
ACTIONS = {
    "pause": (DownloadStatus.PENDING, DownloadStatus.DOWNLOADING),
    "resume": (DownloadStatus.PAUSED, DownloadStatus.FAILED),
    "cancel": ACTIVE_DOWNLOAD_STATUSES,
}


def transfer_settings() -> TransferSettings:
    return TransferSettings(
        part_count=settings.DOWNLOAD_PARTS,
        part_threshold=settings.DOWNLOAD_PART_THRESHOLD_MB * 1024 * 1024,
        stall_seconds=settings.DOWNLOAD_STALL_SECONDS,
        backoff_seconds=settings.DOWNLOAD_RETRY_BACKOFF_SECONDS,
        receive_buffer_bytes=settings.DOWNLOAD_RECEIVE_BUFFER_KB * 1024,
    )


# --- Planning ------------------------------------------------------------------------------------


def fetch_plan(task: DownloadTask) -> DownloadPlan:
    if task.source == "huggingface":
        return huggingface.download_plan(task.model_id, task.revision or "main", task.include or None)
    return ollama.download_plan(task.model_id)


def _destination(task: DownloadTask, plan: DownloadPlan, remote) -> Path:
    if task.source == "huggingface":
        storage.safe_relative_path(remote.path)  # refuse odd names before anything is written
        return storage.huggingface_blob(task.model_id, remote.sha256 or remote.git_sha1)
    return storage.ollama_blob(remote.path)


def apply_plan(task: DownloadTask, plan: DownloadPlan) -> None:
    """Record the files to fetch, after checking names and free disk space."""
    files = [(remote, _destination(task, plan, remote)) for remote in plan.files]
    if task.source == "ollama":
        storage.ollama_manifest(plan.registry_host, plan.model_id)
    missing = sum(remote.size for remote, destination in files if not destination.exists())
    needed = missing + int(settings.DOWNLOAD_DISK_MARGIN_GB * 1024**3)
    free = storage.disk_free_bytes()
    if needed > free:
        raise ApiError(
            "INSUFFICIENT_STORAGE",
            f"{task.model_id} needs {missing} bytes plus a margin of {settings.DOWNLOAD_DISK_MARGIN_GB} GB; "
            f"{free} bytes are free",
            507,
            {"required_bytes": needed, "free_bytes": free, "model_bytes": missing},
        )
    with transaction.atomic():
        task.commit = plan.revision
        task.model_id = plan.model_id
        task.manifest = plan.manifest.decode() if plan.manifest else ""
        task.storage_path = str(storage.ollama_manifest(plan.registry_host, plan.model_id) if task.source == "ollama"
                                else storage.huggingface_repo_dir(task.model_id))
        task.total_bytes = plan.total_bytes
        task.save()
        task.files.all().delete()
        DownloadFile.objects.bulk_create(
            DownloadFile(task=task, path=remote.path, url=remote.url, size=remote.size, sha256=remote.sha256,
                         etag=remote.git_sha1 or remote.sha256, media_type=remote.media_type,
                         destination=str(destination))
            for remote, destination in files
        )


# --- Starting and acting on tasks ----------------------------------------------------------------


def start_download(model_id: str, source: str, revision: str = "main", include: list[str] | None = None,
                   dispatch: bool = True) -> tuple[DownloadTask, bool]:
    """(task, created). An active or completed task for the same model, source and revision is returned as is.

    With `dispatch`, the queue hands the new task to a worker; without, it stays pending for the caller.
    """
    validate_source(source)
    revision = (revision or "main") if source == "huggingface" else ""
    if source == "ollama":
        try:
            model_id = ollama.parse_name(model_id).model_id  # `llama3.2` is `llama3.2:latest`
        except RemoteModelNotFound:
            pass  # planning reports it as MODEL_NOT_FOUND below
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
    except SourceError:
        plan = None  # the worker plans it, with retries
    if plan is not None:
        try:
            apply_plan(task, plan)
        except storage.InvalidFileName as exc:
            _record_failure(task, "INVALID_FILE_NAME", str(exc))
            raise ApiError("INVALID_FILE_NAME", str(exc), 400, {"task_id": task.id}) from None
    else:
        task.save()
    if dispatch:
        dispatch_queue()
    task.refresh_from_db()
    return task, True


def _record_failure(task: DownloadTask, code: str, message: str) -> None:
    task.status, task.error_code, task.error = DownloadStatus.FAILED, code, message
    task.save()


def get_task(task_id: str) -> DownloadTask:
    task = DownloadTask.objects.filter(id=task_id).first()
    if task is None:
        raise ApiError("TASK_NOT_FOUND", f"No download task {task_id}", 404)
    return task


def act(task_id: str, action: str) -> DownloadTask:
    """pause | resume | cancel, when the task's status allows it (else INVALID_ACTION)."""
    with transaction.atomic():
        task = get_task(task_id)
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
        remove_partial_files(task)
    dispatch_queue()
    task.refresh_from_db()
    return task


def delete_task(task_id: str, delete_files: bool) -> dict:
    task = get_task(task_id)
    if task.status in ACTIVE_DOWNLOAD_STATUSES:
        act(task_id, "cancel")
    removed = remove_model_files(task) if delete_files else []
    task.delete()
    return {"id": task_id, "deleted_files": removed}


def remove_partial_files(task: DownloadTask) -> None:
    for file in task.files.all():
        if file.destination:
            partial = storage.partial_path(Path(file.destination))
            partial.unlink(missing_ok=True)
            checkpoint_path(partial).unlink(missing_ok=True)
        file.parts, file.downloaded_bytes, file.status = [], 0, DownloadFile.Status.PENDING
        file.save(update_fields=["parts", "downloaded_bytes", "status"])


def remove_model_files(task: DownloadTask) -> list[str]:
    """Remove what the task put in place, unless a deployment or another completed task still uses it."""
    from deployments.models import Deployment, DeploymentStatus

    in_use = Deployment.objects.filter(model_id=task.model_id, model_source=task.source).exclude(
        status__in=[DeploymentStatus.STOPPED, DeploymentStatus.ERROR])
    if in_use.exists():
        raise ApiError("MODEL_IN_USE", f"{task.model_id} is used by deployment {in_use.first().id}", 409)
    removed = []
    if task.source == "huggingface" and task.storage_path:
        if not DownloadTask.objects.filter(model_id=task.model_id, source=task.source).exclude(id=task.id).exists():
            shutil.rmtree(task.storage_path, ignore_errors=True)
            removed.append(task.storage_path)
        return removed
    # Ollama blobs are shared between models: keep those another completed download still has.
    others = DownloadFile.objects.filter(task__status=DownloadStatus.COMPLETED).exclude(task=task)
    for file in task.files.all():
        if file.destination and not others.filter(destination=file.destination).exists():
            Path(file.destination).unlink(missing_ok=True)
            removed.append(file.destination)
    if task.storage_path:
        Path(task.storage_path).unlink(missing_ok=True)
        removed.append(task.storage_path)
    return removed


# --- The queue ----------------------------------------------------------------------------------


def claim(task_id: str) -> DownloadTask | None:
    """Take a pending task for the caller to run itself (the `pull` command); None if it is not pending."""
    lease = uuid.uuid4().hex
    claimed = DownloadTask.objects.filter(id=task_id, status=DownloadStatus.PENDING).update(
        status=DownloadStatus.DOWNLOADING, lease=lease, heartbeat_at=timezone.now(), started_at=timezone.now())
    return DownloadTask.objects.get(id=task_id) if claimed else None


def dispatch_queue() -> None:
    """Start the oldest pending tasks while fewer than MAX_CONCURRENT_DOWNLOADS are downloading."""
    from django_q.tasks import async_task

    with transaction.atomic():
        running = DownloadTask.objects.filter(status=DownloadStatus.DOWNLOADING).count()
        free = settings.MAX_CONCURRENT_DOWNLOADS - running
        if free <= 0:
            return
        started = []
        for task in DownloadTask.objects.filter(status=DownloadStatus.PENDING).order_by("created_at")[:free]:
            task.status, task.lease, task.heartbeat_at = DownloadStatus.DOWNLOADING, uuid.uuid4().hex, timezone.now()
            task.started_at = task.started_at or timezone.now()
            task.save(update_fields=["status", "lease", "heartbeat_at", "started_at", "updated_at"])
            started.append((task.id, task.lease))
        for task_id, lease in started:
            transaction.on_commit(
                lambda t=task_id, l=lease: async_task("downloads.services.run_download", t, l, task_name=f"download-{t}")
            )


def recover_interrupted_downloads(everything: bool = False) -> int:
    """Queue again the downloading tasks whose job stopped beating (all of them at start-up)."""
    stale = DownloadTask.objects.filter(status=DownloadStatus.DOWNLOADING)
    if not everything:
        cutoff = timezone.now() - timedelta(seconds=settings.DOWNLOAD_STALE_SECONDS)
        stale = stale.filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))
    count = stale.update(status=DownloadStatus.PENDING, lease="", speed_bps=0)
    if count:
        logger.info("%d interrupted download(s) queued again", count)
    dispatch_queue()
    return count


def queue_state() -> dict:
    active = list(DownloadTask.objects.filter(status=DownloadStatus.DOWNLOADING).order_by("started_at"))
    queued = list(DownloadTask.objects.filter(status=DownloadStatus.PENDING).order_by("created_at"))
    paused = list(DownloadTask.objects.filter(status=DownloadStatus.PAUSED).order_by("created_at"))
    return {"active": active, "queued": queued, "paused": paused,
            "total_speed_bps": sum(task.speed_bps for task in active),
            "max_concurrent_downloads": settings.MAX_CONCURRENT_DOWNLOADS}


def storage_state() -> dict:
    usage = shutil.disk_usage(settings.DATA_DIR)
    completed = DownloadTask.objects.filter(status=DownloadStatus.COMPLETED)
    per_source = {name: completed.filter(source=name).aggregate(total=Sum("total_bytes"))["total"] or 0
                  for name in SOURCES}
    per_model = [{"model_id": row["model_id"], "source": row["source"], "bytes": row["total"]}
                 for row in completed.values("model_id", "source").annotate(total=Sum("total_bytes")).order_by("-total")]
    partial = sum(path.stat().st_blocks * 512 for path in settings.MODELS_DIR.rglob(f"*{storage.PARTIAL_SUFFIX}"))
    return {"disk": {"path": str(settings.DATA_DIR), "total_bytes": usage.total, "used_bytes": usage.used,
                     "free_bytes": usage.free},
            "models_dir": str(settings.MODELS_DIR), "by_source": per_source, "by_model": per_model,
            "partial_bytes": partial}


# --- The worker job ------------------------------------------------------------------------------


class _Progress:
    """Persists a running task's progress at most twice a second, and notices when it must stop."""

    def __init__(self, task: DownloadTask):
        self.task = task
        self.samples: deque[tuple[float, int]] = deque(maxlen=10)
        self.last_write = 0.0

    def done_bytes(self, current: DownloadFile | None = None) -> int:
        return sum(f.downloaded_bytes for f in self.task.files.all() if current is None or f.id != current.id) + (
            current.downloaded_bytes if current else 0)

    def tick(self, current: DownloadFile | None, transfer: FileTransfer | None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_write < PROGRESS_SECONDS:
            return
        self.last_write = now
        if current is not None and transfer is not None:
            current.parts = [list(part) for part in transfer.parts]
            current.downloaded_bytes = sum(part[2] for part in transfer.parts)
            # An update, not a save: the row is gone if the task was deleted meanwhile (then it stops below).
            DownloadFile.objects.filter(id=current.id).update(
                parts=current.parts, downloaded_bytes=current.downloaded_bytes, status=current.status)
        done = self.done_bytes(current)
        self.samples.append((now, done))
        first_time, first_done = self.samples[0]
        speed = (done - first_done) / (now - first_time) if now > first_time else 0.0
        remaining = max(0, self.task.total_bytes - done)
        mine = DownloadTask.objects.filter(id=self.task.id, lease=self.task.lease)
        mine.update(downloaded_bytes=done, updated_at=timezone.now())
        running = mine.filter(status=DownloadStatus.DOWNLOADING).update(
            speed_bps=speed, eta_seconds=(remaining / speed) if speed > 0 else None, heartbeat_at=timezone.now())
        if not running:
            # Paused, cancelled, or another job holds the lease now.
            if transfer is None:
                raise TransferStopped()
            transfer.stop.set()


def run_download(task_id: str, lease: str) -> None:
    """The django-q2 job: plan if needed, then fetch, verify and place each file of the task."""
    task = DownloadTask.objects.filter(id=task_id, lease=lease, status=DownloadStatus.DOWNLOADING).first()
    if task is None:
        return  # paused, cancelled or taken over before this job started
    try:
        _download(task)
    except TransferStopped:
        if DownloadTask.objects.filter(id=task_id, status=DownloadStatus.CANCELLED).exists():
            remove_partial_files(task)
    except TransferFailed as exc:
        _fail(task, exc.code, str(exc))
    except storage.InvalidFileName as exc:
        _fail(task, "INVALID_FILE_NAME", str(exc))
    except ApiError as exc:
        _fail(task, exc.code, exc.message)
    except Exception as exc:
        logger.exception("download %s failed", task_id)
        _fail(task, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
    finally:
        dispatch_queue()


def _fail(task: DownloadTask, code: str, message: str) -> None:
    DownloadTask.objects.filter(id=task.id, lease=task.lease).update(
        status=DownloadStatus.FAILED, error_code=code, error=message, speed_bps=0, eta_seconds=None,
        updated_at=timezone.now())


def _plan_with_retries(task: DownloadTask, progress: _Progress) -> None:
    for attempt in range(5):
        try:
            apply_plan(task, fetch_plan(task))
            return
        except RemoteModelNotFound as exc:
            raise TransferFailed("MODEL_NOT_FOUND", str(exc)) from exc
        except RemoteModelGated as exc:
            raise TransferFailed("GATED_MODEL", str(exc)) from exc
        except SourceError as exc:
            if attempt == 4:
                raise TransferFailed("SOURCE_UNAVAILABLE", str(exc)) from exc
            progress.tick(None, None, force=True)
            time.sleep(settings.DOWNLOAD_RETRY_BACKOFF_SECONDS * 2**attempt)


def _download(task: DownloadTask) -> None:
    progress = _Progress(task)
    if not task.files.exists():
        _plan_with_retries(task, progress)
        task.refresh_from_db()
    auth = f"Bearer {settings.HF_TOKEN}" if task.source == "huggingface" and settings.HF_TOKEN else None
    for file in task.files.exclude(status=DownloadFile.Status.COMPLETED):
        _fetch_file(task, file, progress, auth)
    _put_model_in_place(task)
    DownloadTask.objects.filter(id=task.id, lease=task.lease).update(
        status=DownloadStatus.COMPLETED, downloaded_bytes=task.total_bytes, speed_bps=0, eta_seconds=0,
        completed_at=timezone.now(), updated_at=timezone.now(), error="", error_code="")


def _algorithm(file: DownloadFile) -> str:
    return "sha256" if file.sha256 or not file.etag else "git"


def _expected_digest(file: DownloadFile) -> str:
    return file.sha256 or file.etag


def _verified(path: Path, file: DownloadFile) -> bool:
    expected = _expected_digest(file)
    if expected:
        return file_digest(path, _algorithm(file)) == expected
    return path.stat().st_size == file.size


def _fetch_file(task: DownloadTask, file: DownloadFile, progress: _Progress, auth: str | None) -> None:
    destination = Path(file.destination)
    if destination.exists() and _verified(destination, file):
        _mark_done(file)  # a blob already present (another model, an earlier download) is not fetched again
        return
    partial = storage.partial_path(destination)
    settings_ = transfer_settings()
    for attempt in range(2):
        fresh_parts = split_into_parts(file.size, settings_.part_count, settings_.part_threshold)
        if not file.parts or not partial.exists() or not same_layout(file.parts, fresh_parts):
            file.parts = fresh_parts
        # The checkpoint beside the partial file may know of bytes written after the last database write.
        file.parts = load_checkpoint(partial, file.parts)
        file.status = DownloadFile.Status.DOWNLOADING
        transfer = FileTransfer(file.url, file.size, partial, file.parts, settings_, auth, _algorithm(file))
        try:
            digest = transfer.run(lambda: progress.tick(file, transfer))
        finally:
            progress.tick(file, transfer, force=True)  # what is on disk is recorded, whatever happened
        expected = _expected_digest(file)
        if not expected or digest == expected:
            partial.replace(destination)
            checkpoint_path(partial).unlink(missing_ok=True)
            _mark_done(file)
            return
        logger.warning("%s of %s failed verification (attempt %d)", file.path, task.model_id, attempt + 1)
        partial.unlink(missing_ok=True)
        checkpoint_path(partial).unlink(missing_ok=True)
        file.parts, file.downloaded_bytes = [], 0
        file.save(update_fields=["parts", "downloaded_bytes"])
    file.status, file.error = DownloadFile.Status.FAILED, "checksum mismatch"
    file.save(update_fields=["status", "error"])
    raise TransferFailed("CHECKSUM_MISMATCH", f"{file.path}: the bytes received twice do not match their hash")


def _mark_done(file: DownloadFile) -> None:
    file.status, file.downloaded_bytes, file.error = DownloadFile.Status.COMPLETED, file.size, ""
    file.parts = [[0, file.size - 1, file.size]] if file.size else []
    file.save(update_fields=["status", "downloaded_bytes", "error", "parts"])


def _put_model_in_place(task: DownloadTask) -> None:
    if task.source == "huggingface":
        for file in task.files.all():
            storage.link_snapshot(task.model_id, task.commit, file.path, Path(file.destination), task.revision)
    else:
        manifest = Path(task.storage_path)
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(task.manifest)
