from django.urls import path

from downloads import views
from llm_manager.api import pending_endpoint

urlpatterns = [
    path("start", pending_endpoint("download start", ("post",), "Create and start a download task")),
    path("list", views.DownloadListView.as_view()),
    path("queue", pending_endpoint("download queue", ("get",), "Download queue state")),
    path("storage", pending_endpoint("download storage", ("get",), "Storage used by downloads")),
    path("<str:task_id>", pending_endpoint("download task", ("get", "delete"), "Get or delete a download task")),
    path("<str:task_id>/pause", pending_endpoint("download pause", ("put",), "Pause a download")),
    path("<str:task_id>/resume", pending_endpoint("download resume", ("put",), "Resume a paused download")),
    path("<str:task_id>/cancel", pending_endpoint("download cancel", ("put",), "Cancel a download")),
]
