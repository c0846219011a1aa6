from django.contrib import admin

from inference.models import DeploymentUsage, UsageBucket


@admin.register(DeploymentUsage)
class DeploymentUsageAdmin(admin.ModelAdmin):
    list_display = ("deployment", "requests", "errors", "prompt_tokens", "completion_tokens", "updated_at")
    search_fields = ("deployment__id", "deployment__model_id")


@admin.register(UsageBucket)
class UsageBucketAdmin(admin.ModelAdmin):
    """Usage by the hour, read-only: the proxy writes it."""

    list_display = ("hour", "deployment_name", "model", "key_name", "requests", "errors", "prompt_tokens", "completion_tokens")
    list_filter = ("model", "key_name")
    search_fields = ("deployment_name", "deployment_id", "model", "key_name")
    date_hierarchy = "hour"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
