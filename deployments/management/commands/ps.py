"""`ps [--all]`: deployments with their status, engine, port, GPUs and uptime."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from deployments import selectors, supervisor
from deployments.models import DeploymentStatus


class Command(BaseCommand):
    help = "List deployments (running and starting ones; --all for every one)."

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="stopped and failed ones too")

    def handle(self, *args, all: bool, **options):
        shown = [d for d in selectors.deployment_list()
                 if all or d.status in (DeploymentStatus.STARTING, DeploymentStatus.RUNNING, DeploymentStatus.ERROR)]
        self.stdout.write(f"{'ID':22} {'NAME':20} {'MODEL':40} {'ENGINE':12} {'STATUS':9} {'PORT':>5} "
                          f"{'GPUS':6} UPTIME")
        for deployment in shown:
            uptime = supervisor.uptime(deployment)
            gpus = ",".join(str(index) for index in deployment.gpu_ids) or "-"
            self.stdout.write(f"{deployment.id:22} {deployment.name[:20]:20} {deployment.model_id[:40]:40} "
                              f"{deployment.engine:12} {deployment.status:9} {deployment.port or '-':>5} {gpus:6} "
                              f"{_duration(uptime)}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
