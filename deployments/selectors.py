"""Deployment queries."""

from __future__ import annotations

from django.db.models import QuerySet

from core.api import ApiError
from deployments.models import Deployment, DeploymentStatus

# How long the proxy (inference.services) may go on using a deployment's host and port after reading them: an engine
# that moves (a drain) keeps answering at least this long after its route changed.
ROUTE_TTL = 1.0


def get_deployment(deployment_id: str) -> Deployment:
    deployment = Deployment.objects.filter(id=deployment_id).first()
    if deployment is None:
        raise ApiError("DEPLOYMENT_NOT_FOUND", f"No deployment {deployment_id}", 404)
    return deployment


def find_deployment(id_or_name: str) -> Deployment:
    """A deployment by its id, else the newest of that name."""
    found = Deployment.objects.filter(id=id_or_name).first() or \
        Deployment.objects.filter(name=id_or_name).order_by("-created_at").first()
    if found is None:
        raise ApiError("DEPLOYMENT_NOT_FOUND", f"No deployment {id_or_name}", 404)
    return found


def deployment_list(status: str | None = None) -> QuerySet:
    """Deployments, newest first, with their usage."""
    found = Deployment.objects.select_related("usage").order_by("-created_at")
    return found.filter(status=status) if status else found


def running(order_by: str = "name") -> QuerySet:
    return Deployment.objects.filter(status=DeploymentStatus.RUNNING).order_by(order_by)
