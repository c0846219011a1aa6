"""OpenAPI links: from the operations that create an id to those that take it, so clients (and stateful API
testers) can follow what a created download, deployment, sync job or favorite leads to."""

from __future__ import annotations

TASK_OPERATIONS = ("api_downloads_retrieve", "api_downloads_destroy", "downloads_cancel", "downloads_pause",
                   "downloads_resume")
DEPLOYMENT_OPERATIONS = ("api_deployments_retrieve", "api_deployments_destroy", "api_deployments_health_retrieve",
                         "api_deployments_logs_retrieve", "api_deployments_model_info_retrieve",
                         "api_deployments_restart_update", "api_deployments_stop_update")
# operation that creates → (the id's place in its answer, the parameter that takes it, the operations)
LINKS = {
    "api_downloads_start_create": ("$response.body#/data/task/id", "task_id", TASK_OPERATIONS),
    "api_deployments_start_create": ("$response.body#/data/deployment_id", "deployment_id", DEPLOYMENT_OPERATIONS),
    "api_models_sync_create": ("$response.body#/data/id", "job_id", ("api_models_sync_retrieve",)),
    "api_models_favorite_create": ("$response.body#/data/model_id", "model_id",
                                   ("api_models_info_retrieve", "api_models_favorite_destroy")),
}


def add_links(result, generator, request, public):
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            link = LINKS.get(operation.get("operationId"))
            if link is None:
                continue
            expression, parameter, targets = link
            for code, response in operation["responses"].items():
                if code.startswith("2"):
                    response["links"] = {target: {"operationId": target, "parameters": {parameter: expression}}
                                         for target in targets}
    return result
