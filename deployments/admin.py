"""Deployments in the console: start one from a downloaded model with its memory estimate shown first,
stop / restart / delete, live health and restart count, and a log view that follows new lines."""

from __future__ import annotations

import shlex

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html
from rest_framework import serializers

from catalog import selectors as catalog
from core.admin_actions import console_page, row_action_view, row_buttons, service_action
from core.api import ApiError, error_json, first_error
from deployments import selectors, services
from deployments.engines import ENGINES
from deployments.models import Deployment, DeploymentStatus, DeploymentTask, RestartPolicy
from deployments.views import DeploymentStartRequest

ROW_ACTIONS = {
    "stop": lambda deployment_id: services.stop_deployment(deployment_id=deployment_id),
    "restart": lambda deployment_id: services.restart_deployment(deployment_id=deployment_id),
    "delete": lambda deployment_id: services.delete_deployment(deployment_id=deployment_id, delete_logs=False),
}
MODEL_SEPARATOR = "|"  # the form's model choice is "source|model_id"; ids hold ':' and '/' but never '|'


def _downloaded_models() -> list[tuple[str, str]]:
    return [(f"{source}{MODEL_SEPARATOR}{model_id}", f"{model_id} ({source})")
            for source, model_id in catalog.downloaded_choices()]


NUMBERS = ("port", "gpu_memory_utilization", "max_model_len", "idle_timeout")


def _number(text: str) -> int | float | str:
    """A form's number as the JSON API takes it; text that is no number stays text (and is refused as such)."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _start_body(post) -> dict:
    """The deploy form's fields as the API's start request (blank fields left to their defaults). Engine flags are
    written as on a command line; environment variables one `NAME=value` a line."""
    source, _, model_id = post.get("model", "").partition(MODEL_SEPARATOR)
    body = {name: _number(post[name]) if name in NUMBERS else post[name]
            for name in ("port", "gpu_memory_utilization", "max_model_len", "engine", "name", "restart_policy",
                         "idle_timeout",
                         "file", "quantization", "task")
            if post.get(name, "").strip()}
    try:
        engine_args = shlex.split(post.get("engine_args", ""))
    except ValueError:
        engine_args = [post.get("engine_args", "")]  # unbalanced quotes: refused as not a flag
    env = dict(line.split("=", 1) if "=" in line else (line, "") for line in post.get("env", "").splitlines()
               if line.strip())
    gpus = [_number(index.strip()) for index in post.get("gpu_ids", "").split(",") if index.strip()]
    return {**body, "model_id": model_id, "model_source": source, "force": post.get("force") == "on",
            "engine_args": engine_args, "env": {name.strip(): value for name, value in env.items()},
            **({"gpu_ids": gpus} if gpus else {})}


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "model_id", "engine", "status_label", "port", "health", "restarts", "row_actions")
    list_filter = ("status", "engine", "model_source")
    search_fields = ("id", "name", "model_id")
    readonly_fields = ("id", "pid", "restart_count", "created_at", "updated_at", "started_at", "stopped_at", "error")
    actions = [service_action(name, operation, "deployment") for name, operation in ROW_ACTIONS.items()]

    def has_change_permission(self, request: HttpRequest, obj: Deployment | None = None) -> bool:
        return False  # a running engine is changed by stopping and deploying again, not by editing its row

    def get_urls(self):
        view = self.admin_site.admin_view
        act = row_action_view(ROW_ACTIONS, "admin:deployments_deployment_changelist")
        own = [
            path("estimate/", view(self.estimate_view), name="deployments_deployment_estimate"),
            path("<str:pk>/act/<str:action>/", view(act), name="deployments_deployment_act"),
            path("<str:deployment_id>/logs/", view(self.logs_view), name="deployments_deployment_logs"),
        ]
        return own + super().get_urls()

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        """The deploy form instead of a bare model form: a deployment is started by the service, not saved."""
        if request.method == "POST":
            body = DeploymentStartRequest(data=_start_body(request.POST))
            try:
                body.is_valid(raise_exception=True)
                deployment = services.start_deployment(**body.validated_data)
            except serializers.ValidationError as exc:
                messages.error(request, first_error(exc.detail))
            except ApiError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Deployment {deployment.id} of {deployment.model_id} is starting on "
                                          f"{deployment.engine}, port {deployment.port}")
                return redirect("admin:deployments_deployment_changelist")
        return console_page(request, self.admin_site, "admin/deployments/deploy.html", "Deploy a model",
                            opts=self.model._meta, models=_downloaded_models(), engines=sorted(ENGINES),
                            policies=RestartPolicy.choices, tasks=DeploymentTask.choices, values=request.POST)

    @staticmethod
    def estimate_view(request: HttpRequest) -> JsonResponse:
        body = _start_body(request.GET)
        try:
            utilization = float(body.get("gpu_memory_utilization", 0.9))
            max_model_len = int(body["max_model_len"]) if "max_model_len" in body else None
            estimate = services.memory_estimate(model_id=body["model_id"], model_source=body["model_source"],
                                                engine=body.get("engine"), max_model_len=max_model_len,
                                                gpu_memory_utilization=utilization, file=body.get("file", ""),
                                                quantization=body.get("quantization", ""))
        except ValueError:
            return error_json("VALIDATION_ERROR", "max_model_len and gpu_memory_utilization are numbers", 400)
        except ApiError as exc:
            return error_json(exc.code, exc.message, exc.http_status, exc.details)
        return JsonResponse({"success": True, "data": estimate})

    def logs_view(self, request: HttpRequest, deployment_id: str) -> HttpResponse:
        try:
            deployment = selectors.get_deployment(deployment_id)
        except ApiError as exc:
            messages.error(request, exc.message)
            return redirect("admin:deployments_deployment_changelist")
        return console_page(request, self.admin_site, "admin/deployments/logs.html", f"Logs of {deployment.name}",
                            opts=self.model._meta, deployment=deployment)

    @admin.display(description="status", ordering="status")
    def status_label(self, deployment: Deployment) -> str:
        return format_html('<span data-status-for="{}" title="{}">{}</span>', deployment.id, deployment.error,
                           deployment.status)

    @admin.display(description="health")
    def health(self, deployment: Deployment) -> str:
        # Probing every engine would hold up the page: the console's script asks /api/.../health per row.
        return format_html('<span data-health-for="{}" data-live="{}">-</span>', deployment.id,
                           "yes" if deployment.status in (DeploymentStatus.STARTING, DeploymentStatus.RUNNING) else "")

    @admin.display(description="restarts", ordering="restart_count")
    def restarts(self, deployment: Deployment) -> str:
        return format_html('<span data-restarts-for="{}">{}</span>', deployment.id, deployment.restart_count)

    @admin.display(description="actions")
    def row_actions(self, deployment: Deployment) -> str:
        logs = format_html('<a class="button" href="{}">Logs</a>',
                           reverse("admin:deployments_deployment_logs", args=[deployment.id]))
        return row_buttons("admin:deployments_deployment_act", deployment.id, list(ROW_ACTIONS), extra=logs)
