"""`restart DEPLOYMENT`: restart a deployment (by id or name)."""

from deployments import services
from deployments.management.commands._deployment_action import DeploymentActionCommand


class Command(DeploymentActionCommand):
    help = "Restart a deployment, named by its id or its name."
    action = services.restart_deployment
