"""`ls`: the models downloaded (or imported) on this machine."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from catalog import selectors


class Command(BaseCommand):
    help = "List the models complete on this machine."

    def handle(self, *args, **options):
        models = selectors.downloaded_models()
        for model in models:
            self.stdout.write(f"{model.source:11} {model.model_id:50} {model.total_bytes / 1024**3:8.2f} GB  "
                              f"{model.storage_path}")
        self.stdout.write(f"{len(models)} model(s)")
