"""`chat TARGET`: an interactive chat with a running deployment (its id or name) or a model one runs, each answer
streamed in as the engine writes it. Lines come from standard input; an empty line or EOF ends the chat."""

from __future__ import annotations

import json
import sys

import httpx
from django.core.management.base import BaseCommand, CommandError

from core.api import ApiError
from deployments import selectors
from deployments.models import Deployment, DeploymentStatus
from inference.services import check_chat_supported, engine_model


class Command(BaseCommand):
    help = "Chat with a running deployment or model, the answers streamed."

    def add_arguments(self, parser):
        parser.add_argument("target", help="a deployment id or name, or a model id a running deployment serves")
        parser.add_argument("--system", default="", help="a system message")
        parser.add_argument("--max-tokens", type=int, default=512)
        parser.add_argument("--temperature", type=float)

    def handle(self, *args, target: str, system: str, max_tokens: int, temperature: float | None, **options):
        deployment = self._running(target)
        messages = [{"role": "system", "content": system}] if system else []
        interactive = sys.stdin.isatty()
        while True:
            if interactive:
                self.stdout.write("> ", ending="")
                self.stdout.flush()
            line = sys.stdin.readline()
            if not line.strip():
                break
            messages.append({"role": "user", "content": line.strip()})
            answer = self._stream(deployment, messages, max_tokens, temperature)
            messages.append({"role": "assistant", "content": answer})

    @staticmethod
    def _running(target: str) -> Deployment:
        try:
            deployment = selectors.find_deployment(target)
        except ApiError:
            deployment = selectors.running(order_by="-created_at").filter(model_id=target).first()
        if deployment is None:
            raise CommandError(f"no deployment or running model {target}")
        if deployment.status != DeploymentStatus.RUNNING:
            raise CommandError(f"{deployment.id} is {deployment.status}")
        try:
            check_chat_supported(deployment)
        except ApiError as exc:
            raise CommandError(exc.message) from None
        return deployment

    def _stream(self, deployment: Deployment, messages: list, max_tokens: int, temperature: float | None) -> str:
        body = {"model": engine_model(deployment), "messages": messages, "stream": True, "max_tokens": max_tokens}
        if temperature is not None:
            body["temperature"] = temperature
        answer = []
        url = f"http://{deployment.host}:{deployment.port}/v1/chat/completions"
        try:
            with httpx.stream("POST", url, json=body, timeout=httpx.Timeout(600, connect=5)) as response:
                if response.status_code >= 400:
                    raise CommandError(f"the engine answered {response.status_code}: {response.read()[:300]!r}")
                for line in response.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    for choice in json.loads(line[6:]).get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") or ""
                        answer.append(piece)
                        self.stdout.write(piece, ending="")
                        self.stdout.flush()
        except httpx.HTTPError as exc:
            raise CommandError(f"the engine did not answer: {exc}") from None
        self.stdout.write("")
        return "".join(answer)
