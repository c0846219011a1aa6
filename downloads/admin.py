from django.contrib import admin, messages

from downloads import services
from downloads.models import DownloadFile, DownloadTask
from llm_manager.api import ApiError


class DownloadFileInline(admin.TabularInline):
    model = DownloadFile
    extra = 0
    fields = ("path", "size", "downloaded_bytes", "status", "sha256", "error")
    readonly_fields = fields
    can_delete = False


def _action(name: str):
    def run(modeladmin, request, queryset):
        done = 0
        for task in queryset:
            try:
                services.act(task.id, name)
                done += 1
            except ApiError as exc:
                modeladmin.message_user(request, f"{task.id}: {exc.message}", messages.WARNING)
        modeladmin.message_user(request, f"{name}: {done} task(s)")

    run.__name__ = f"{name}_selected"
    run.short_description = f"{name.title()} selected downloads"
    return run


@admin.register(DownloadTask)
class DownloadTaskAdmin(admin.ModelAdmin):
    list_display = ("id", "model_id", "source", "status", "progress_percent", "speed", "created_at")
    list_filter = ("status", "source")
    search_fields = ("id", "model_id")
    readonly_fields = ("id", "created_at", "updated_at", "started_at", "completed_at", "lease", "heartbeat_at")
    inlines = [DownloadFileInline]
    actions = [_action("pause"), _action("resume"), _action("cancel")]

    @admin.display(description="progress")
    def progress_percent(self, task: DownloadTask) -> str:
        return f"{task.progress:.1f}%"

    @admin.display(description="speed")
    def speed(self, task: DownloadTask) -> str:
        return f"{task.speed_bps / 1024 / 1024:.1f} MB/s" if task.speed_bps else "-"
