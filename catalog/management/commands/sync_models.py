"""`manage.py sync_models [--source] [--limit]`: sync the catalog in the foreground with a progress bar."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from catalog import services
from catalog.models import SyncJob
from catalog.sources import SEARCHABLE


class Command(BaseCommand):
    help = "Fetch models from the sources into the local catalog, showing progress."

    def add_arguments(self, parser):
        parser.add_argument("--source", choices=list(SEARCHABLE), help="one source (default: all)")
        parser.add_argument("--limit", type=int, default=100, help="models per source (default 100)")

    def handle(self, *args, source: str | None, limit: int, **options):
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        failed = False
        for job in services.create_sync_jobs(source=source, limit=limit, dispatch=False):
            name = job.source
            job = services.run_sync_job(job.id, progress=self._bar(name))
            self.stdout.write("")
            if job.status == SyncJob.Status.FAILED:
                failed = True
                self.stderr.write(f"{name}: failed: {job.error}")
            else:
                self.stdout.write(f"{name}: {job.added} added, {job.updated} updated, {job.failed} failed")
        if failed:
            raise CommandError("at least one source could not be synced")

    def _bar(self, name: str):
        def show(done: int, total: int) -> None:
            width = 30
            filled = int(width * done / total) if total else width
            self.stdout.write(f"\r{name:12} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", ending="")
            self.stdout.flush()

        return show
