"""The worker job: plan if needed, then fetch, verify and place each file of a task, then record the model.

It runs in a django-q2 worker (or in the `pull` command's thread) while it holds the task's lease.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import time
from collections import deque
from pathlib import Path
from typing import Iterator

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from prometheus_client import Counter

from catalog import services as catalog
from catalog.sources import InvalidModelId, RemoteModelGated, RemoteModelNotFound, SourceError
from core.api import ApiError
from core.db import DATABASE_ERRORS
from core.logs import log_context
from core.paths import InvalidFileName
from core.shutdown import cluster_stopping
from downloads import selectors, storage
from downloads.models import DownloadFile, DownloadStatus, DownloadTask
from downloads.planning import apply_plan, fetch_plan
from downloads.queue import dispatch_queue
from downloads.transfer import (
    FileTransfer,
    TransferFailed,
    TransferSettings,
    TransferStopped,
    fetch_into_place,
    verified,
)

logger = logging.getLogger(__name__)

DOWNLOADED_BYTES = Counter("llm_manager_download_bytes", "Bytes downloaded (received from a source), by source",
                           ["source"])

PROGRESS_SECONDS = 0.5  # at most two progress writes a second
LOCK_POLL_SECONDS = 0.2


def transfer_settings() -> TransferSettings:
    return TransferSettings(
        part_count=settings.DOWNLOAD_PARTS,
        max_part_count=max(settings.DOWNLOAD_PARTS, settings.DOWNLOAD_MAX_PARTS),
        part_threshold=settings.DOWNLOAD_PART_THRESHOLD_MB * 1024 * 1024,
        stall_seconds=settings.DOWNLOAD_STALL_SECONDS,
        backoff_seconds=settings.DOWNLOAD_RETRY_BACKOFF_SECONDS,
        receive_buffer_bytes=settings.DOWNLOAD_RECEIVE_BUFFER_KB * 1024,
    )


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
        try:
            self._write(now, current, transfer)
        except DATABASE_ERRORS as exc:
            # The database is restarting or briefly gone: the bytes keep coming (the checkpoint file beside the
            # partial file holds their offsets); progress is written again once it answers.
            logger.warning("progress of %s not saved, the database failed: %s", self.task.id, exc)
            close_old_connections()

    def _write(self, now: float, current: DownloadFile | None, transfer: FileTransfer | None) -> None:
        if transfer is not None:
            DOWNLOADED_BYTES.labels(self.task.source).inc(transfer.take_received())
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
        # Paused, cancelled, another job holds the lease now, or the worker cluster is stopping.
        if not running or cluster_stopping():
            if transfer is None:
                raise TransferStopped()
            transfer.stop.set()


def run_download(task_id: str, lease: str) -> None:
    """The django-q2 job: plan if needed, then fetch, verify and place each file of the task."""
    task = DownloadTask.objects.filter(id=task_id, lease=lease, status=DownloadStatus.DOWNLOADING).first()
    if task is None:
        return  # paused, cancelled or taken over before this job started
    with log_context(task_id=task_id):
        _run(task)


def _run(task: DownloadTask) -> None:
    task_id = task.id
    try:
        _download(task)
    except TransferStopped:
        if cluster_stopping():
            # Its progress is saved: queued again, it continues from there on the next start.
            DownloadTask.objects.filter(id=task_id, lease=task.lease, status=DownloadStatus.DOWNLOADING).update(
                status=DownloadStatus.PENDING, lease="", speed_bps=0, eta_seconds=None, updated_at=timezone.now())
            logger.info("the worker cluster is stopping: %s:%s is queued again", task.source, task.model_id)
            return
        if DownloadTask.objects.filter(id=task_id, status=DownloadStatus.CANCELLED).exists():
            storage.remove_partial_files(task)
    except TransferFailed as exc:
        _fail(task, exc.code, str(exc))
    except InvalidFileName as exc:
        _fail(task, "INVALID_FILE_NAME", str(exc))
    except InvalidModelId as exc:
        _fail(task, "VALIDATION_ERROR", str(exc))
    except ApiError as exc:
        _fail(task, exc.code, exc.message)
    except DATABASE_ERRORS as exc:
        # Not the download's fault: it stays `downloading`, its heartbeat stops, and the caretaker queues it again
        # once the database answers (it continues from its checkpoint).
        logger.warning("download %s stopped, the database failed: %s", task_id, exc)
    except Exception as exc:
        logger.exception("download %s failed", task_id)
        _fail(task, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
    finally:
        if not cluster_stopping():
            dispatch_queue()


def _fail(task: DownloadTask, code: str, message: str) -> None:
    DownloadTask.objects.filter(id=task.id, lease=task.lease).update(
        status=DownloadStatus.FAILED, error_code=code, error=message, speed_bps=0, eta_seconds=None,
        updated_at=timezone.now())


def _plan_with_retries(task: DownloadTask, progress: _Progress) -> None:
    for attempt in range(5):
        try:
            apply_plan(task=task, plan=fetch_plan(task))
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
    source = catalog.source_of(task.source)
    auth = source.authorization()
    for file in task.files.exclude(status=DownloadFile.Status.COMPLETED):
        _fetch_file(task, file, progress, auth)
    model = selectors.stored_model(task)
    source.put_in_place(model=model)
    completed = DownloadTask.objects.filter(id=task.id, lease=task.lease).update(
        status=DownloadStatus.COMPLETED, downloaded_bytes=task.total_bytes, speed_bps=0, eta_seconds=0,
        completed_at=timezone.now(), updated_at=timezone.now(), error="", error_code="")
    if completed:
        catalog.record_downloaded(model=model, total_bytes=task.total_bytes, download_task_id=task.id)
        logger.info("%s:%s downloaded and verified (%d bytes) into %s", task.source, task.model_id, task.total_bytes,
                    task.storage_path)


def digest_algorithm(file: DownloadFile) -> str:
    return "sha256" if file.sha256 or not file.etag else "git"


def expected_digest(file: DownloadFile) -> str:
    return file.sha256 or file.etag


@contextlib.contextmanager
def _only_fetcher_of(destination: Path, progress: _Progress) -> Iterator[None]:
    """One job at a time fetches a file: models share blobs (Ollama's template and config layers), and two tasks
    may want the same one at once. An flock, which the kernel releases if the worker dies; while another job holds
    it, this one keeps its heartbeat (and notices a pause or cancel)."""
    lock = settings.DATA_DIR / "locks" / f"{hashlib.sha1(str(destination).encode()).hexdigest()}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                progress.tick(None, None)
                time.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch_file(task: DownloadTask, file: DownloadFile, progress: _Progress, auth: str | None) -> None:
    destination = Path(file.destination)
    with _only_fetcher_of(destination, progress):
        _fetch_file_alone(task, file, progress, auth, destination)


def _fetch_file_alone(task: DownloadTask, file: DownloadFile, progress: _Progress, auth: str | None,
                      destination: Path) -> None:
    if destination.exists() and verified(destination, expected_digest(file), digest_algorithm(file), file.size):
        _mark_done(file)  # a blob already present (another model, an earlier download) is not fetched again
        return
    file.status = DownloadFile.Status.DOWNLOADING

    def started_over() -> None:
        logger.warning("%s of %s failed verification: fetching it again", file.path, task.model_id)
        file.parts, file.downloaded_bytes = [], 0
        file.save(update_fields=["parts", "downloaded_bytes"])

    try:
        fetch_into_place(url=file.url, size=file.size, destination=destination, expected=expected_digest(file),
                         algorithm=digest_algorithm(file), settings=transfer_settings(), auth=auth, parts=file.parts,
                         tick=lambda transfer, last: progress.tick(file, transfer, force=last),
                         started_over=started_over)
    except TransferFailed as exc:
        file.status, file.error = DownloadFile.Status.FAILED, str(exc)
        DownloadFile.objects.filter(id=file.id).update(status=file.status, error=file.error)
        raise
    _mark_done(file)


def _mark_done(file: DownloadFile) -> None:
    file.status, file.downloaded_bytes, file.error = DownloadFile.Status.COMPLETED, file.size, ""
    file.parts = [[0, file.size - 1, file.size]] if file.size else []
    file.save(update_fields=["status", "downloaded_bytes", "error", "parts"])
