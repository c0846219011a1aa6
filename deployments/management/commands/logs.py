"""`logs DEPLOYMENT [-n LINES] [-f] [--json]`: an engine's log, followed with -f; with --json, one JSON object a line
carrying the deployment id (for log shippers)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.api import ApiError
from deployments import selectors, supervisor

FOLLOW_SECONDS = 0.25


class Command(BaseCommand):
    help = "Print the last lines of a deployment's engine log; -f follows new lines (Ctrl-C stops)."

    def add_arguments(self, parser):
        parser.add_argument("deployment", help="a deployment id or name")
        parser.add_argument("-n", "--lines", type=int, default=100)
        parser.add_argument("-f", "--follow", action="store_true")
        parser.add_argument("--json", action="store_true", help="one JSON object a line, with the deployment id")

    def handle(self, *args, deployment: str, lines: int, follow: bool, json: bool, **options):
        try:
            found = selectors.find_deployment(deployment)
        except ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        path = supervisor.log_path(found)
        for line in supervisor.log_lines(found, max(1, lines)):
            self._show(found.id, line, json)
        if follow:
            try:
                self._follow(found.id, path, json)
            except KeyboardInterrupt:
                pass

    def _follow(self, deployment_id: str, path: Path, as_json: bool) -> None:
        position = path.stat().st_size if path.exists() else 0
        pending = b""
        while True:
            size = path.stat().st_size if path.exists() else 0
            if size < position:  # rotated (copy-truncate): start again at the top
                position = 0
            if size > position:
                with open(path, "rb") as handle:
                    handle.seek(position)
                    pending += handle.read(size - position)
                position = size
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    self._show(deployment_id, line.decode(errors="replace"), as_json)
            time.sleep(FOLLOW_SECONDS)

    def _show(self, deployment_id: str, line: str, as_json: bool) -> None:
        self.stdout.write(json.dumps({"deployment_id": deployment_id, "line": line}) if as_json else line)
        self.stdout.flush()
