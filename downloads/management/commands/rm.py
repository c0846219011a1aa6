"""`rm MODEL_ID --source SOURCE [--keep-files] [--imported-files]`: remove a downloaded model."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from catalog.sources import SOURCES
from core.api import ApiError
from downloads import selectors, services


class Command(BaseCommand):
    help = "Remove a model: its download tasks and, unless kept, the files the service downloaded."

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("--source", required=True, choices=list(SOURCES))
        parser.add_argument("--keep-files", action="store_true", help="forget the model but leave its files")
        parser.add_argument("--imported-files", action="store_true",
                            help="also remove the files of an imported model (the service did not download them)")

    def handle(self, *args, model_id: str, source: str, keep_files: bool, imported_files: bool, **options):
        tasks = selectors.tasks_of(source=source, model_id=model_id)
        if not tasks:
            raise CommandError(f"{source}:{model_id} has no download")
        for task in tasks:
            try:
                removed = services.delete_task(task_id=task.id, delete_files=not keep_files,
                                               delete_imported=imported_files)
            except ApiError as exc:
                raise CommandError(f"{exc.code}: {exc.message}") from None
            for path in removed["deleted_files"]:
                self.stdout.write(f"removed {path}")
        self.stdout.write(f"{source}:{model_id} removed")
