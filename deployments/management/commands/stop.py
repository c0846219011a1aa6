"""`stop DEPLOYMENT`: stop a deployment (by id or name)."""

from deployments import services
from deployments.management.commands._deployment_action import DeploymentActionCommand


class Command(DeploymentActionCommand):
    help = "Stop a deployment, named by its id or its name."
    action = services.stop_deployment
