from django.contrib import admin

from deployments import services
from deployments.models import Deployment
from llm_manager.admin_actions import service_action


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "model_id", "engine", "status", "port", "pid", "restart_count", "created_at")
    list_filter = ("status", "engine", "model_source")
    search_fields = ("id", "name", "model_id")
    readonly_fields = ("id", "pid", "restart_count", "created_at", "updated_at", "started_at", "stopped_at", "error")
    actions = [service_action("stop", services.stop_deployment, "deployment"),
               service_action("restart", services.restart_deployment, "deployment")]
