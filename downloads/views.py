"""Download API views (contract section 3): thin, the work is in services and selectors."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from catalog.fields import SourceField
from core.api import PageQuery, TextField, paginate, success, validate_body, validate_query
from downloads import imports, queue, selectors, services
from downloads import serializers as shapes
from downloads.models import DownloadStatus


class DownloadStartRequest(serializers.Serializer):
    model_id = TextField(max_length=255)
    source = SourceField()
    revision = TextField(max_length=255, required=False, allow_blank=True, default="",
                                     help_text="Branch, tag or commit; empty: the source's default (main on Hugging "
                                               "Face, master on ModelScope; Ollama names carry their tag)")
    include = serializers.ListField(child=TextField(max_length=255), required=False, default=list,
                                    max_length=50, help_text='Glob patterns of files to fetch, e.g. ["*Q4_K_M.gguf"]')


class StartView(APIView):
    @extend_schema(summary="Create and start a download task (an active or completed one for the same model is returned)",
                   request=DownloadStartRequest)
    def post(self, request):
        task, created = services.start_download(**validate_body(DownloadStartRequest, request))
        message = "下载任务已创建" if created else "A task for this model already exists"
        return success({"task": shapes.task_to_dict(task), "message": message}, message)


class DownloadListQuery(PageQuery):
    status = serializers.ChoiceField(choices=DownloadStatus.choices, required=False)


class DownloadListView(APIView):
    @extend_schema(summary="List download tasks, newest first", parameters=[DownloadListQuery])
    def get(self, request):
        query = validate_query(DownloadListQuery, request)
        page = paginate(selectors.task_list(query.get("status")), query["page"], query["page_size"])
        return success(page.as_data(shapes.task_to_dict))


class TaskView(APIView):
    @extend_schema(summary="State of a download task, with a per-file breakdown")
    def get(self, request, task_id: str):
        return success(shapes.task_to_dict(selectors.get_task(task_id)))

    @extend_schema(summary="Delete a task record (cancelling it first if active)",
                   parameters=[OpenApiParameter("delete_files", bool, required=False,
                                                description="also remove the model files if no deployment uses them"),
                               OpenApiParameter("delete_imported", bool, required=False,
                                                description="with delete_files: remove an imported model's files "
                                                            "too (the service did not download them)")])
    def delete(self, request, task_id: str):
        def flag(name: str) -> bool:
            return request.query_params.get(name, "false").lower() in ("1", "true", "yes")

        return success(services.delete_task(task_id=task_id, delete_files=flag("delete_files"),
                                            delete_imported=flag("delete_imported")), "Download task deleted")


def action_view(action: str, summary: str):
    class ActionView(APIView):
        @extend_schema(summary=summary, request=None, operation_id=f"downloads_{action}")
        def put(self, request, task_id: str):
            task = services.act(task_id=task_id, action=action)
            return success(shapes.task_to_dict(task), f"Download {task.status}")

    ActionView.__name__ = f"{action.title()}View"
    return ActionView.as_view()


class QueueView(APIView):
    @extend_schema(summary="Active, queued (with positions) and paused downloads, total speed and the concurrency limit")
    def get(self, request):
        state = queue.queue_state()
        data = {
            "active": [shapes.task_to_dict(task, with_files=False) for task in state["active"]],
            "queued": [{**shapes.task_to_dict(task, with_files=False), "position": position}
                       for position, task in enumerate(state["queued"], start=1)],
            "paused": [shapes.task_to_dict(task, with_files=False) for task in state["paused"]],
            "total_speed": f"{shapes.human_size(state['total_speed_bps'])}/s",
            "total_speed_bytes_per_second": round(state["total_speed_bps"], 1),
            "max_concurrent_downloads": state["max_concurrent_downloads"],
        }
        return success(data)


class StorageView(APIView):
    @extend_schema(summary="Disk of the data dir, bytes per source and per model, partial bytes")
    def get(self, request):
        return success(services.storage_state())


class ImportRequest(serializers.Serializer):
    path = TextField(required=False, allow_blank=True, default="", max_length=4096,
                                 help_text="A GGUF file or a model directory; with `source`, that source's store "
                                           "(a Hugging Face cache, an Ollama models dir). Empty: every source's "
                                           "store at its default place")
    source = SourceField(required=False, allow_blank=True, default="")
    name = TextField(required=False, allow_blank=True, default="", max_length=128,
                                 help_text="The name of a model imported by path (default: the file or dir name)")


class ImportView(APIView):
    @extend_schema(summary="Register models already on this machine as completed downloads, in place (no copy)",
                   request=ImportRequest)
    def post(self, request):
        result = imports.import_models(**(validate_body(ImportRequest, request) if request.body else {}))
        data = {"imported": [shapes.task_to_dict(task) for task in result.imported],
                "existing": [shapes.task_to_dict(task) for task in result.existing], "skipped": result.skipped}
        return success(data, f"{len(result.imported)} imported, {len(result.existing)} already known, "
                             f"{len(result.skipped)} skipped")
