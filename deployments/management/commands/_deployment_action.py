"""The shape of `stop` and `restart`: one deployment, named by id or name, and one service action on it."""

from __future__ import annotations

from typing import Callable

from django.core.management.base import BaseCommand, CommandError

from core.api import ApiError
from deployments import selectors
from deployments.models import Deployment


class DeploymentActionCommand(BaseCommand):
    action: Callable[..., Deployment]  # a service taking deployment_id=

    def add_arguments(self, parser):
        parser.add_argument("deployment", help="a deployment id or name")

    def handle(self, *args, deployment: str, **options):
        try:
            done = type(self).action(deployment_id=selectors.find_deployment(deployment).id)
        except ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        self.stdout.write(f"{done.id}: {done.status}")
