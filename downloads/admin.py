"""Downloads in the console: a task list whose progress, speed and ETA move live over /ws/downloads,
with pause / resume / cancel / delete on each row and as bulk actions, and the storage figures."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from downloads import selectors, services
from downloads.models import DownloadFile, DownloadTask
from llm_manager.admin_actions import service_action
from llm_manager.api import ApiError

ROW_ACTIONS = ("pause", "resume", "cancel", "delete")


def _delete_keeping_files(task_id: str) -> dict:
    return services.delete_task(task_id, delete_files=False)


def _delete_with_files(task_id: str) -> dict:
    return services.delete_task(task_id, delete_files=True)


class DownloadFileInline(admin.TabularInline):
    model = DownloadFile
    extra = 0
    fields = ("path", "size", "downloaded_bytes", "status", "sha256", "error")
    readonly_fields = fields
    can_delete = False


@admin.register(DownloadTask)
class DownloadTaskAdmin(admin.ModelAdmin):
    list_display = ("id", "model_id", "source", "status_label", "progress_bar", "speed", "eta", "size", "row_actions")
    list_filter = ("status", "source")
    search_fields = ("id", "model_id")
    readonly_fields = ("id", "created_at", "updated_at", "started_at", "completed_at", "lease", "heartbeat_at")
    inlines = [DownloadFileInline]
    actions = [service_action(name, lambda pk, name=name: services.act(pk, name), "download")
               for name in ("pause", "resume", "cancel")] + [
        service_action("delete", _delete_keeping_files, "download"),
        service_action("delete with files", _delete_with_files, "download",
                       "Delete selected downloads and their files"),
    ]

    # Tasks change only through the service (the rows' buttons and the actions): a hand-edited
    # status or byte count would lie to the downloader. Downloads start from the catalog search.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DownloadTask | None = None) -> bool:
        return False

    def get_urls(self):
        own = [path("<str:task_id>/act/<str:action>/", self.admin_site.admin_view(self.act_view),
                    name="downloads_downloadtask_act")]
        return own + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "storage": services.storage_state(),
                         "allowed_statuses": {name: list(statuses) for name, statuses in services.ACTIONS.items()}}
        return super().changelist_view(request, extra_context)

    @staticmethod
    @require_POST
    def act_view(request: HttpRequest, task_id: str, action: str) -> HttpResponse:
        try:
            if action == "delete":
                _delete_keeping_files(task_id)
            elif action in services.ACTIONS:
                services.act(task_id, action)
            else:
                raise ApiError("INVALID_ACTION", f"Unknown action {action}", 400)
            messages.success(request, f"{task_id}: {action} done")
        except ApiError as exc:
            messages.error(request, f"{task_id}: {exc.message}")
        return HttpResponseRedirect(reverse("admin:downloads_downloadtask_changelist"))

    @admin.display(description="status", ordering="status")
    def status_label(self, task: DownloadTask) -> str:
        return format_html('<span data-status-for="{}">{}</span>', task.id, task.status)

    @admin.display(description="progress")
    def progress_bar(self, task: DownloadTask) -> str:
        return format_html('<progress max="100" value="{}" data-progress-for="{}"></progress> '
                           '<span data-percent-for="{}">{}%</span>', task.progress, task.id, task.id,
                           f"{task.progress:.1f}")

    @admin.display(description="speed")
    def speed(self, task: DownloadTask) -> str:
        return format_html('<span data-speed-for="{}">{}</span>', task.id,
                           f"{selectors.human_size(task.speed_bps)}/s" if task.speed_bps else "-")

    @admin.display(description="ETA")
    def eta(self, task: DownloadTask) -> str:
        return format_html('<span data-eta-for="{}">{}</span>', task.id,
                           selectors.human_duration(task.eta_seconds) or "-")

    @admin.display(description="size")
    def size(self, task: DownloadTask) -> str:
        return format_html('<span data-size-for="{}">{} / {}</span>', task.id,
                           selectors.human_size(task.downloaded_bytes), selectors.human_size(task.total_bytes))

    @admin.display(description="actions")
    def row_actions(self, task: DownloadTask) -> str:
        # Buttons of the change list's own form (it carries the CSRF token), each posting to its action.
        buttons = [
            format_html('<button type="submit" formmethod="post" formaction="{}" data-action="{}" data-task="{}"{}>'
                        "{}</button>", reverse("admin:downloads_downloadtask_act", args=[task.id, name]), name,
                        task.id, "" if name == "delete" or task.status in services.ACTIONS[name] else " disabled",
                        name.title())
            for name in ROW_ACTIONS
        ]
        return format_html('<span class="console-actions">{}</span>', format_html_join("", "{}", ((button,) for button in buttons)))
