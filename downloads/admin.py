from django.contrib import admin

from downloads import services
from downloads.models import DownloadFile, DownloadTask
from llm_manager.admin_actions import service_action


class DownloadFileInline(admin.TabularInline):
    model = DownloadFile
    extra = 0
    fields = ("path", "size", "downloaded_bytes", "status", "sha256", "error")
    readonly_fields = fields
    can_delete = False


@admin.register(DownloadTask)
class DownloadTaskAdmin(admin.ModelAdmin):
    list_display = ("id", "model_id", "source", "status", "progress_percent", "speed", "created_at")
    list_filter = ("status", "source")
    search_fields = ("id", "model_id")
    readonly_fields = ("id", "created_at", "updated_at", "started_at", "completed_at", "lease", "heartbeat_at")
    inlines = [DownloadFileInline]
    actions = [service_action(name, lambda pk, name=name: services.act(pk, name), "download")
               for name in ("pause", "resume", "cancel")]

    @admin.display(description="progress")
    def progress_percent(self, task: DownloadTask) -> str:
        return f"{task.progress:.1f}%"

    @admin.display(description="speed")
    def speed(self, task: DownloadTask) -> str:
        return f"{task.speed_bps / 1024 / 1024:.1f} MB/s" if task.speed_bps else "-"
