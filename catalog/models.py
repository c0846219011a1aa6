from django.db import models


class Source(models.TextChoices):
    HUGGINGFACE = "huggingface", "Hugging Face"
    OLLAMA = "ollama", "Ollama"


class CatalogModel(models.Model):
    """A model known from a source, kept locally so search is fast and works offline."""

    model_id = models.CharField(max_length=255, help_text="Repo id (org/name) or Ollama name:tag")
    source = models.CharField(max_length=20, choices=Source.choices)
    name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    model_type = models.CharField(max_length=100, blank=True)
    parameters = models.CharField(max_length=32, blank=True, help_text="Written like 117M or 1.5B")
    size_bytes = models.BigIntegerField(null=True, blank=True)
    downloads = models.BigIntegerField(default=0)
    likes = models.BigIntegerField(default=0)
    trending_score = models.FloatField(default=0)
    tags = models.JSONField(default=list, blank=True)
    details = models.JSONField(default=dict, blank=True, help_text="Source-specific: gated, library, files, quantizations…")
    created_at = models.DateTimeField(null=True, blank=True, help_text="At the source")
    updated_at = models.DateTimeField(null=True, blank=True, help_text="At the source")
    last_synced_at = models.DateTimeField(null=True, blank=True)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "model_id"], name="unique_catalog_model")]
        indexes = [
            # One per sort order, carrying the filter columns: a search walks it in order
            # and filters without reading whole entries.
            models.Index(fields=["-downloads", "-id", "source", "model_type"], name="catalog_downloads"),
            models.Index(fields=["-likes", "-id", "source", "model_type"], name="catalog_likes"),
            models.Index(fields=["-updated_at", "-id", "source", "model_type"], name="catalog_updated"),
            models.Index(fields=["-trending_score", "-id", "source", "model_type"], name="catalog_trending"),
            # Counting by source and type.
            models.Index(fields=["source", "model_type"], name="catalog_source_type"),
            models.Index(fields=["model_type"], name="catalog_type"),
            # Ranking a few full-text matches by id lookups without reading whole entries.
            models.Index(
                fields=["id", "source", "model_type", "downloads", "likes", "trending_score", "updated_at"],
                name="catalog_rank",
            ),
        ]
        ordering = ["-downloads", "-id"]

    def __str__(self) -> str:
        return f"{self.source}:{self.model_id}"


class Favorite(models.Model):
    model_id = models.CharField(max_length=255)
    source = models.CharField(max_length=20, choices=Source.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "model_id"], name="unique_favorite")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.source}:{self.model_id}"


class SyncJob(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    source = models.CharField(max_length=20, choices=Source.choices)
    limit = models.PositiveIntegerField(default=100)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    added = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"sync {self.source} #{self.pk} ({self.status})"
