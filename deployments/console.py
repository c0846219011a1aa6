"""The console's Nodes page: the nodes engines run on (a cluster's, or this machine), their GPUs and
deployments, with Drain and Undrain buttons that call the same services as the API."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from core.admin_actions import console_page, row_action_view
from deployments import services, supervisor


def nodes_page(request: HttpRequest) -> HttpResponse:
    return console_page(request, admin.site, "admin/deployments/nodes.html", "Nodes",
                        nodes=supervisor.host().nodes())


node_action = row_action_view({"drain": lambda name: services.drain_node(node_id=name),
                               "undrain": lambda name: services.undrain_node(node_id=name)}, "admin:nodes")
