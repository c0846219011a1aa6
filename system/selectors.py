"""Figures that span the apps: the dashboard's counts and the catalog's statistics with downloads and usage."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import Coalesce

from catalog import selectors as catalog_selectors
from catalog.models import CatalogModel
from core.host import health, load, resources
from deployments.models import Deployment, DeploymentStatus
from downloads.models import DownloadTask
from inference.models import DeploymentUsage


def resources_with_holders() -> dict[str, Any]:
    """The machine's figures, each GPU with the deployments placed on it (those not stopped)."""
    figures = resources()
    holders: dict[int, list[str]] = {}
    for deployment_id, name, gpu_ids in Deployment.objects.exclude(
            status__in=[DeploymentStatus.STOPPED, DeploymentStatus.ERROR]).values_list("id", "name", "gpu_ids"):
        for index in gpu_ids or []:
            holders.setdefault(index, []).append(name or deployment_id)
    for gpu in figures["gpus"]:
        gpu["deployments"] = holders.get(gpu["index"], [])
    return figures


def dashboard_figures() -> dict[str, Any]:
    """What the console's dashboard shows: the machine, and how many of each thing are in which state."""
    def counts(queryset, field: str) -> dict[str, int]:
        return {row[field]: row["n"] for row in queryset.values(field).annotate(n=Count("pk")).order_by(field)}

    return {
        "health": health(),
        "resources": resources_with_holders(),
        "load": load(),
        "catalog": counts(CatalogModel.objects.all(), "source"),
        "downloads": counts(DownloadTask.objects.all(), "status"),
        "deployments": counts(Deployment.objects.all(), "status"),
    }


def catalog_stats() -> dict[str, Any]:
    """The catalog's counts, favorites, downloaded models, last sync per source, and inference totals."""
    return {
        **catalog_selectors.stats(),
        "inference": DeploymentUsage.objects.aggregate(
            requests=Coalesce(Sum("requests"), 0), errors=Coalesce(Sum("errors"), 0),
            prompt_tokens=Coalesce(Sum("prompt_tokens"), 0), completion_tokens=Coalesce(Sum("completion_tokens"), 0)),
    }
