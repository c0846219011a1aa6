from django.contrib import admin

from inference.models import DeploymentUsage


@admin.register(DeploymentUsage)
class DeploymentUsageAdmin(admin.ModelAdmin):
    list_display = ("deployment", "requests", "errors", "prompt_tokens", "completion_tokens", "updated_at")
    search_fields = ("deployment__id", "deployment__model_id")
