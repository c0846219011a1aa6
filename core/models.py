from django.db import models
from rest_framework_api_key.models import AbstractAPIKey

from core.identity import SCOPES


class Lease(models.Model):
    """A named duty that one process at a time performs (supervising engines, re-queueing downloads), held by
    renewing it before it expires: a second worker cluster or a restarted one takes over only when it lapses."""

    name = models.CharField(max_length=64, unique=True)
    holder = models.CharField(max_length=255)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder}"


class ApiKey(AbstractAPIKey):
    """A key for the API: hashed (djangorestframework-api-key; only its prefix is kept in clear), with the scopes
    it grants, the models it may use and its limits per minute."""

    scopes = models.JSONField(default=list, help_text="Any of: " + ", ".join(SCOPES))
    allowed_models = models.JSONField(default=list, blank=True,
                                      help_text="Model names or globs (e.g. llama3, qwen*) it may use; empty: every model")
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit")
    tokens_per_minute = models.PositiveBigIntegerField(null=True, blank=True, help_text="Empty: no limit")

    class Meta(AbstractAPIKey.Meta):
        constraints = [models.UniqueConstraint(fields=["name"], condition=models.Q(revoked=False),
                                               name="one_usable_key_per_name")]


class AuditEvent(models.Model):
    """One state-changing call, through the API, the console or a command: who, from where, what, on which
    object, and how it ended."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=255, db_index=True)
    actor_kind = models.CharField(max_length=16)
    ip = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_id = models.CharField(max_length=512, blank=True, db_index=True)
    result = models.CharField(max_length=64, help_text="success, or the error code")
    message = models.TextField(blank=True)

    class Meta:
        ordering = ("-at", "-id")

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.object_id}: {self.result}"


class RateWindow(models.Model):
    """Requests and tokens one key spent in one minute, when no Redis is configured to count them."""

    key_id = models.CharField(max_length=150)
    minute = models.BigIntegerField(help_text="Minutes since the epoch")
    requests = models.PositiveBigIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key_id", "minute"], name="one_window_per_key_minute")]
