"""Downloads in the console: a task list whose progress, speed and ETA move live over /ws/downloads,
with pause / resume / cancel / delete on each row and as bulk actions, and the storage figures."""

from __future__ import annotations

from functools import partial

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from catalog.admin import DownloadForm
from core.admin_actions import form_error_message, redirect_back, row_action_view, row_buttons, service_action
from core.api import ApiError
from downloads import imports, services
from downloads import serializers as shapes
from downloads.models import DownloadFile, DownloadTask


def _act(task_id: str, action: str) -> DownloadTask:
    return services.act(task_id=task_id, action=action)


def _delete_keeping_files(task_id: str) -> dict:
    return services.delete_task(task_id=task_id, delete_files=False)


def _delete_with_files(task_id: str) -> dict:
    return services.delete_task(task_id=task_id, delete_files=True)


ROW_ACTIONS = {**{name: partial(_act, action=name) for name in services.ACTIONS},
               "delete": _delete_keeping_files}


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
    actions = [service_action(name, operation, "download") for name, operation in ROW_ACTIONS.items()] + [
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
        act = row_action_view(ROW_ACTIONS, "admin:downloads_downloadtask_changelist")
        own = [path("<str:pk>/act/<str:action>/", self.admin_site.admin_view(act), name="downloads_downloadtask_act"),
               path("start/", self.admin_site.admin_view(self.start_view), name="downloads_downloadtask_start"),
               path("import/", self.admin_site.admin_view(self.import_view), name="downloads_downloadtask_import")]
        return own + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "storage": services.storage_state(),
                         "allowed_statuses": {name: list(statuses) for name, statuses in services.ACTIONS.items()}}
        return super().changelist_view(request, extra_context)

    @staticmethod
    @require_POST
    def start_view(request: HttpRequest) -> HttpResponse:
        """The catalog's download forms post here: start the download, then show the task list."""
        form = DownloadForm(request.POST)
        if not form.is_valid():
            messages.error(request, form_error_message(form))
            return redirect_back(request, reverse("admin:catalog_catalogmodel_search"))
        data = form.cleaned_data
        patterns = data["include"].replace(",", " ").split()
        try:
            task, created = services.start_download(model_id=data["model_id"], source=data["source"],
                                                    revision=data["revision"], include=patterns)
        except ApiError as exc:
            messages.error(request, exc.message)
            return redirect_back(request, reverse("admin:catalog_catalogmodel_search"))
        verb = "started" if created else f"already exists ({task.status})"
        messages.success(request, f"Download of {task.model_id} {verb}: task {task.id}")
        return redirect("admin:downloads_downloadtask_changelist")

    @staticmethod
    @require_POST
    def import_view(request: HttpRequest) -> HttpResponse:
        """Every source's store on this machine, registered in place (as `llm-manager import`)."""
        result = imports.import_models()
        messages.success(request, f"{len(result.imported)} imported, {len(result.existing)} already known, "
                                  f"{len(result.skipped)} skipped")
        for skipped in result.skipped:
            messages.warning(request, f"{skipped['source']}:{skipped['model_id']}: {skipped['problem']}")
        return redirect("admin:downloads_downloadtask_changelist")

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
                           f"{shapes.human_size(task.speed_bps)}/s" if task.speed_bps else "-")

    @admin.display(description="ETA")
    def eta(self, task: DownloadTask) -> str:
        return format_html('<span data-eta-for="{}">{}</span>', task.id,
                           shapes.human_duration(task.eta_seconds) or "-")

    @admin.display(description="size")
    def size(self, task: DownloadTask) -> str:
        return format_html('<span data-size-for="{}">{} / {}</span>', task.id,
                           shapes.human_size(task.downloaded_bytes), shapes.human_size(task.total_bytes))

    @admin.display(description="actions")
    def row_actions(self, task: DownloadTask) -> str:
        return row_buttons("admin:downloads_downloadtask_act", task.id, list(ROW_ACTIONS),
                           lambda action: action == "delete" or task.status in services.ACTIONS[action])
