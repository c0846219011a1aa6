from django.urls import path

from downloads import views

urlpatterns = [
    path("start", views.StartView.as_view()),
    path("list", views.DownloadListView.as_view()),
    path("queue", views.QueueView.as_view()),
    path("storage", views.StorageView.as_view()),
    path("<str:task_id>", views.TaskView.as_view()),
    path("<str:task_id>/pause", views.action_view("pause", "Pause a download (bytes are kept)")),
    path("<str:task_id>/resume", views.action_view("resume", "Resume a paused or failed download where it stopped")),
    path("<str:task_id>/cancel", views.action_view("cancel", "Cancel a download and remove its partial bytes")),
]
