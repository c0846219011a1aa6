from django.db import models


class DeploymentUsage(models.Model):
    """Requests and tokens served through a deployment, counted by the proxy."""

    deployment = models.OneToOneField("deployments.Deployment", on_delete=models.CASCADE, related_name="usage")
    requests = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deployment usage"

    def __str__(self) -> str:
        return f"usage of {self.deployment_id}"
