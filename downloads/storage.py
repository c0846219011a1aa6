"""Downloads on disk, whatever the source: partial files beside their destinations, and free space.

Each source decides where its files go (catalog/sources); a file being fetched is written to
`{destination}.llmpart` and renamed into place once verified.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from downloads.models import DownloadFile, DownloadTask
from downloads.transfer import checkpoint_path, partial_path


def disk_free_bytes() -> int:
    stats = os.statvfs(settings.MODELS_DIR)
    return stats.f_bavail * stats.f_frsize


def remove_partial_files(task: DownloadTask) -> None:
    for file in task.files.all():
        if file.destination:
            partial = partial_path(Path(file.destination))
            partial.unlink(missing_ok=True)
            checkpoint_path(partial).unlink(missing_ok=True)
        file.parts, file.downloaded_bytes, file.status = [], 0, DownloadFile.Status.PENDING
        file.save(update_fields=["parts", "downloaded_bytes", "status"])
