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


class UsageBucket(models.Model):
    """Requests and tokens of one deployment for one key in one hour (UTC), added to by the proxy's usage flush.
    Kept after the deployment is deleted: the history of what was served."""

    hour = models.DateTimeField(help_text="The hour's start, UTC")
    deployment_id = models.CharField(max_length=32)
    deployment_name = models.CharField(max_length=255, blank=True)
    model = models.CharField(max_length=255)
    key_name = models.CharField(max_length=50, blank=True, help_text="The calling key's name; empty: no key "
                                "(an operator in the console, or an open service)")
    requests = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "deployment_id", "key_name"],
                                               name="one_bucket_per_hour_and_key")]
        indexes = [models.Index(fields=["hour"])]

    def __str__(self) -> str:
        return f"{self.deployment_name or self.deployment_id} at {self.hour:%Y-%m-%d %H}:00"
