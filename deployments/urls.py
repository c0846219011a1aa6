from django.urls import path

from core.api import off_event_loop
from deployments import views

urlpatterns = [
    path("start", off_event_loop(views.StartView.as_view())),
    path("list", views.ListView.as_view()),
    path("<str:deployment_id>", off_event_loop(views.DetailView.as_view())),
    path("<str:deployment_id>/stop", off_event_loop(views.StopView.as_view())),
    path("<str:deployment_id>/restart", off_event_loop(views.RestartView.as_view())),
    path("<str:deployment_id>/logs", off_event_loop(views.LogsView.as_view())),
    path("<str:deployment_id>/health", off_event_loop(views.HealthView.as_view())),
    path("<str:deployment_id>/model-info", off_event_loop(views.ModelInfoView.as_view())),
]

node_urlpatterns = [
    path("", off_event_loop(views.NodesView.as_view())),
    path("/<str:node_id>", off_event_loop(views.NodeView.as_view())),
    path("/<str:node_id>/drain", off_event_loop(views.NodeDrainView.as_view())),
    path("/<str:node_id>/undrain", off_event_loop(views.NodeUndrainView.as_view())),
]
