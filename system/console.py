"""The operators' console: the Django admin site with a live dashboard and a playground.

Each app adds its own pages through its ModelAdmin (catalog search, download
progress, deployment form and logs); the site holds the pages that belong to no
single model: the dashboard's figures and the inference playground.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin import actions
from django.http import HttpRequest, JsonResponse
from django.urls import path

from core.audit import record_console
from deployments import console as nodes
from inference import console as playground
from system.selectors import dashboard_figures


@admin.action(permissions=["delete"], description=actions.delete_selected.short_description)
def delete_selected(modeladmin, request: HttpRequest, queryset):
    """The admin's own bulk deletion, each object it deleted recorded in the audit trail (the admin logs a bulk
    deletion in one insert, which sends no signal for core.audit to hear). Apps whose deletion is a service
    replace it with their own action of this name."""
    chosen = {obj.pk: str(obj) for obj in queryset}
    response = actions.delete_selected(modeladmin, request, queryset)
    if response is None:  # confirmed and done (the confirmation page is a response)
        left = set(modeladmin.model._default_manager.filter(pk__in=chosen).values_list("pk", flat=True))
        for pk, text in chosen.items():
            if pk not in left:
                record_console(model=modeladmin.model, pk=pk, verb="delete", message=text)
    return response


class ConsoleAdminSite(admin.AdminSite):
    site_header = "LLM Manager"
    site_title = "LLM Manager"
    index_title = "Operators' console"
    enable_nav_sidebar = False  # the task and deployment lists need the width

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_action(delete_selected, "delete_selected")

    def get_urls(self):
        def dashboard_data(request: HttpRequest) -> JsonResponse:
            return JsonResponse(dashboard_figures())

        return [
            path("dashboard/figures", self.admin_view(dashboard_data), name="dashboard-figures"),
            path("playground/", self.admin_view(playground.page), name="playground"),
            path("usage/", self.admin_view(playground.usage_page), name="usage"),
            path("nodes/", self.admin_view(nodes.nodes_page), name="nodes"),
            path("nodes/<str:pk>/<str:action>", self.admin_view(nodes.node_action), name="node-action"),
            path("playground/<str:kind>/<str:deployment_id>", playground.send, name="playground-send"),
        ] + super().get_urls()
