"""Download API views: thin, the work is in services and selectors."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from downloads import selectors
from downloads.models import DownloadStatus, DownloadTask
from llm_manager.api import ApiError, PageQuery, paginate, success, validate_query


class DownloadListQuery(PageQuery):
    status = serializers.ChoiceField(choices=DownloadStatus.choices, required=False)


def get_task(task_id: str) -> DownloadTask:
    try:
        return DownloadTask.objects.prefetch_related("files").get(id=task_id)
    except DownloadTask.DoesNotExist:
        raise ApiError("TASK_NOT_FOUND", f"No download task {task_id}", 404) from None


class DownloadListView(APIView):
    @extend_schema(summary="List download tasks", parameters=[DownloadListQuery])
    def get(self, request):
        query = validate_query(DownloadListQuery, request)
        tasks = DownloadTask.objects.order_by("-created_at").prefetch_related("files")
        if "status" in query:
            tasks = tasks.filter(status=query["status"])
        page = paginate(tasks, query["page"], query["page_size"])
        return success(page.as_data(selectors.task_to_dict))
