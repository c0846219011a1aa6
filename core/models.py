from django.db import models


class Lease(models.Model):
    """A named duty that one process at a time performs (supervising engines, re-queueing downloads), held by
    renewing it before it expires: a second worker cluster or a restarted one takes over only when it lapses."""

    name = models.CharField(max_length=64, unique=True)
    holder = models.CharField(max_length=255)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder}"
