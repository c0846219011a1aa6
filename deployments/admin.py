from django.contrib import admin, messages

from deployments import services
from deployments.models import Deployment
from llm_manager.api import ApiError


def _action(name: str, operation):
    def run(modeladmin, request, queryset):
        for deployment in queryset:
            try:
                operation(deployment.id)
            except ApiError as exc:
                modeladmin.message_user(request, f"{deployment.id}: {exc.message}", messages.WARNING)
        modeladmin.message_user(request, f"{name}: done")

    run.__name__ = f"{name}_selected"
    run.short_description = f"{name.title()} selected deployments"
    return run


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "model_id", "engine", "status", "port", "pid", "restart_count", "created_at")
    list_filter = ("status", "engine", "model_source")
    search_fields = ("id", "name", "model_id")
    readonly_fields = ("id", "pid", "restart_count", "created_at", "updated_at", "started_at", "stopped_at", "error")
    actions = [_action("stop", services.stop_deployment), _action("restart", services.restart_deployment)]
