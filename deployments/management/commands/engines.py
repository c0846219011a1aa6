"""`engines`: the inference engines, whether each runs here (or what to install), and its version."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from deployments.engines import ENGINES
from deployments.serializers import engine_to_dict


class Command(BaseCommand):
    help = "List the inference engines with their availability on this machine."

    def handle(self, *args, **options):
        for engine in ENGINES.values():
            shown = engine_to_dict(engine)
            state = f"ready ({shown['version']})" if shown["available"] else f"not available: {shown['missing']}"
            self.stdout.write(f"{engine.name:14} {', '.join(engine.formats):12} {state}")
