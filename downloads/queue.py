"""The download queue: at most MAX_CONCURRENT_DOWNLOADS tasks download at once, the others wait in FIFO order.

A worker job only transfers while it holds the task's lease; the job renews a heartbeat twice a
second, and a task whose heartbeat stops (a killed worker, a restart) is queued again and continues
from the bytes already on disk.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from downloads.models import DownloadStatus, DownloadTask

logger = logging.getLogger(__name__)


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
                lambda t=task_id, l=lease: async_task("downloads.jobs.run_download", t, l, task_name=f"download-{t}")
            )


def recover_interrupted_downloads(*, everything: bool = False) -> int:
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
