"""The operators' console: the Django admin site with a live dashboard and a playground.

Each app adds its own pages through its ModelAdmin (catalog search, download
progress, deployment form and logs); the site holds the pages that belong to no
single model: the dashboard's figures and the inference playground.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import path

from core.admin_actions import ConsoleAudit
from deployments import console as nodes
from inference import console as playground
from system.selectors import dashboard_figures


class ConsoleAdminSite(admin.AdminSite):
    site_header = "LLM Manager"
    site_title = "LLM Manager"
    index_title = "Operators' console"
    enable_nav_sidebar = False  # the task and deployment lists need the width

    def register(self, model_or_iterable, admin_class=None, **options):
        """Every model's admin, with its generic forms recorded in the audit trail (ConsoleAudit), unless it
        records its own (`audits_itself`)."""
        base = admin_class or admin.ModelAdmin
        if not getattr(base, "audits_itself", False):
            base = type(base.__name__, (ConsoleAudit, base), {"__module__": base.__module__})
        super().register(model_or_iterable, base, **options)

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
