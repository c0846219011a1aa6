from django.urls import path

from llm_manager.api import pending_endpoint

urlpatterns = [
    path("start", pending_endpoint("deployment start", ("post",), "Start a deployment")),
    path("list", pending_endpoint("deployment list", ("get",), "List deployments")),
    path("<str:deployment_id>", pending_endpoint("deployment", ("get", "delete"), "Get or delete a deployment")),
    path("<str:deployment_id>/stop", pending_endpoint("deployment stop", ("put",), "Stop a deployment")),
    path("<str:deployment_id>/restart", pending_endpoint("deployment restart", ("put",), "Restart a deployment")),
    path("<str:deployment_id>/logs", pending_endpoint("deployment logs", ("get",), "Last lines of the engine log")),
    path("<str:deployment_id>/health", pending_endpoint("deployment health", ("get",), "Deployment health")),
    path("<str:deployment_id>/model-info", pending_endpoint("deployment model info", ("get",), "Model served")),
]
