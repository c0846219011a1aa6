"""`manage.py deploy MODEL_ID --source … [--engine] [--port]`: start a deployment and wait until it runs.

The worker cluster's caretaker supervises it from then on (its probe, crashes, restarts).
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from catalog.sources import SOURCES
from core.api import ApiError
from deployments import services
from deployments.engines import ENGINES
from deployments.models import DeploymentStatus, DeploymentTask


class Command(BaseCommand):
    help = "Deploy a downloaded model on an inference engine."

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("--source", required=True, choices=list(SOURCES))
        parser.add_argument("--engine", choices=sorted(ENGINES))
        parser.add_argument("--port", type=int)
        parser.add_argument("--max-model-len", type=int)
        parser.add_argument("--engine-arg", action="append", default=[], dest="engine_args", metavar="ARG",
                            help="an extra engine flag or value, after the service's own (repeat it; write "
                                 "--engine-arg=--n_gpu_layers --engine-arg=20)")
        parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                            help="an environment variable of the engine (repeatable)")
        parser.add_argument("--force", action="store_true", help="start even if the memory estimate says no")
        parser.add_argument("--gpus", type=lambda text: [int(index) for index in text.split(",")], dest="gpu_ids",
                            metavar="0,1", help="the GPUs to start on (default: chosen by free memory)")
        parser.add_argument("--gpu-count", type=int, help="how many GPUs, chosen by free memory")
        parser.add_argument("--idle-timeout", type=int, help="stop after this many seconds without a request "
                            "(at least 10; the next call loads it again)")
        parser.add_argument("--task", choices=[task.value for task in DeploymentTask], default=DeploymentTask.GENERATE,
                            help="embed: serve /v1/embeddings")
        parser.add_argument("--quantization", default="", help="of a repository with several GGUF models, the one "
                            "to deploy (e.g. Q4_K_M; without it or --file: Q4_K_M, Q5_K_M, … in that order)")
        parser.add_argument("--file", default="", help="of a repository with several GGUF models, the file to "
                            "deploy (its path in the repository; any shard of a split model)")

    def handle(self, *args, model_id, source, engine, port, max_model_len, force, engine_args, env, quantization,
               file, task, idle_timeout, gpu_ids, gpu_count, **options):
        if idle_timeout is not None and idle_timeout < 10:
            raise CommandError("--idle-timeout is at least 10 seconds")
        if any("=" not in item for item in env):
            raise CommandError("--env takes NAME=VALUE")
        try:
            deployment = services.start_deployment(model_id=model_id, model_source=source, port=port,
                                                   max_model_len=max_model_len, engine=engine, force=force,
                                                   engine_args=engine_args, file=file, quantization=quantization, task=task,
                                                   idle_timeout=idle_timeout, gpu_ids=gpu_ids, gpu_count=gpu_count,
                                                   env=dict(item.split("=", 1) for item in env))
        except ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        self.stdout.write(f"{deployment.id}: {deployment.engine} starting on port {deployment.port}")
        deadline = time.monotonic() + settings.ENGINE_READY_TIMEOUT
        while time.monotonic() < deadline:  # the engine's watcher, started with it here, promotes it when ready
            deployment.refresh_from_db()
            if deployment.status != DeploymentStatus.STARTING:
                break
            time.sleep(0.5)
        if deployment.status != DeploymentStatus.RUNNING:
            raise CommandError(f"{deployment.id} is {deployment.status}: {deployment.error}")
        self.stdout.write(f"{deployment.id} is running at http://{deployment.host}:{deployment.port}/v1")
