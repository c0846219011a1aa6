"""`manage.py pull MODEL_ID --source SOURCE [--revision] [--include]`: download in the foreground.

It uses the same tasks, files and resume state as the service: a pull interrupted with
Ctrl-C is paused and continues from its bytes on the next pull, or from the API. A task
that a running service is already downloading is followed rather than fetched twice.
"""

from __future__ import annotations

import threading

from django.core.management.base import BaseCommand, CommandError

from catalog.sources import SOURCES
from core.api import ApiError
from downloads import jobs, queue, services
from downloads import serializers as shapes
from downloads.models import DownloadStatus, DownloadTask


class Command(BaseCommand):
    help = "Download a model in the foreground with a progress bar."

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("--source", required=True, choices=list(SOURCES))
        parser.add_argument("--revision", default="", help="branch, tag or commit (default: the source's)")
        parser.add_argument("--include", action="append", default=[], help="glob of files to fetch (repeatable)")

    def handle(self, *args, model_id: str, source: str, revision: str, include: list[str], **options):
        try:
            task, _ = services.start_download(model_id=model_id, source=source, revision=revision, include=include,
                                              dispatch=False)
            if task.status in (DownloadStatus.PAUSED, DownloadStatus.FAILED):
                task = services.act(task_id=task.id, action="resume")
        except ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        claimed = queue.claim(task.id)
        runner = threading.Thread(target=jobs.run_download, args=(claimed.id, claimed.lease), daemon=True) \
            if claimed else None
        if runner:
            runner.start()
        try:
            while True:
                task.refresh_from_db()
                self._show(task)
                if task.status not in (DownloadStatus.PENDING, DownloadStatus.DOWNLOADING) and not (
                        runner and runner.is_alive()):
                    break
                (runner.join(0.5) if runner else threading.Event().wait(0.5))
        except KeyboardInterrupt:
            services.act(task_id=task.id, action="pause")
            if runner:
                runner.join(5)
            raise CommandError("interrupted: the download is paused; pull again to continue") from None
        self.stdout.write("")
        if task.status != DownloadStatus.COMPLETED:
            raise CommandError(f"{task.status}: {task.error_code} {task.error}")
        self.stdout.write(f"{task.model_id} is in {task.storage_path}")

    def _show(self, task: DownloadTask) -> None:
        width = 30
        filled = int(width * task.progress / 100)
        self.stdout.write(
            f"\r{task.model_id} [{'#' * filled}{'.' * (width - filled)}] {task.progress:5.1f}% "
            f"{shapes.human_size(task.downloaded_bytes)}/{shapes.human_size(task.total_bytes)} "
            f"{shapes.human_size(task.speed_bps)}/s  ",
            ending="",
        )
        self.stdout.flush()
