"""`import [--path PATH] [--source SOURCE] [--name NAME]`: register models this machine already has, in place."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from catalog.sources import SOURCES
from core.api import ApiError
from downloads import imports


class Command(BaseCommand):
    help = ("Register models already on this machine (the Hugging Face cache, Ollama's models dir, or a GGUF file or "
            "model directory given by --path) as downloaded, without copying them.")

    def add_arguments(self, parser):
        parser.add_argument("--path", default="", help="a GGUF file or model directory (or, with --source, that "
                                                       "source's store)")
        parser.add_argument("--source", default="", choices=["", *SOURCES], help="only this source's store")
        parser.add_argument("--name", default="", help="the name of a model imported by --path")

    def handle(self, *args, path: str, source: str, name: str, **options):
        try:
            result = imports.import_models(path=path, source=source, name=name)
        except ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        for task in result.imported:
            self.stdout.write(f"imported  {task.source}:{task.model_id}  {task.storage_path}")
        for task in result.existing:
            self.stdout.write(f"known     {task.source}:{task.model_id}  {task.storage_path}")
        for skipped in result.skipped:
            self.stderr.write(f"skipped   {skipped['source']}:{skipped['model_id']}  {skipped['problem']}")
        self.stdout.write(f"{len(result.imported)} imported, {len(result.existing)} already known, "
                          f"{len(result.skipped)} skipped")
