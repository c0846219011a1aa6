"""Planning a download: asking the model's source which files to fetch, checking the disk, recording the files."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction

from catalog import services as catalog
from catalog.sources import DownloadPlan
from core.api import ApiError
from downloads import storage
from downloads.models import DownloadFile, DownloadTask


def fetch_plan(task: DownloadTask) -> DownloadPlan:
    """The source's plan for the task (SourceError and its kinds, InvalidFileName, InvalidModelId propagate)."""
    return catalog.source_of(task.source).download_plan(model_id=task.model_id, revision=task.revision,
                                                        include=list(task.include or []))


def apply_plan(*, task: DownloadTask, plan: DownloadPlan) -> None:
    """Record the files to fetch, after checking free disk space."""
    missing = sum(remote.size for remote in plan.files if not Path(remote.destination).exists())
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
        task.storage_path = str(plan.storage_path)
        task.total_bytes = plan.total_bytes
        task.save()
        task.files.all().delete()
        DownloadFile.objects.bulk_create(
            DownloadFile(task=task, path=remote.path, url=remote.url, size=remote.size, sha256=remote.sha256,
                         etag=remote.git_sha1 or remote.sha256, media_type=remote.media_type,
                         destination=str(remote.destination))
            for remote in plan.files
        )
