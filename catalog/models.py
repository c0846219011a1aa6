from django.db import models

from catalog.sources import StoredFile, StoredModel, validate_source_name


def source_field(**kwargs) -> models.CharField:
    """A source's name: a plain string checked against the sources found in catalog/sources (no choices, so a
    new source needs no migration)."""
    return models.CharField(max_length=20, validators=[validate_source_name], **kwargs)


class CatalogModel(models.Model):
    """A model known from a source, kept locally so search is fast and works offline."""

    model_id = models.CharField(max_length=255, help_text="Repo id (org/name) or Ollama name:tag")
    source = source_field()
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
    source = source_field()
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

    source = source_field()
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


class DownloadedModel(models.Model):
    """A model whose files are complete on this machine, as the download that finished last left it.

    The downloads app writes it when a download completes; deployments read it to hand the model to an
    engine, and the catalog to say what is downloaded."""

    source = source_field()
    model_id = models.CharField(max_length=255)
    revision = models.CharField(max_length=255, blank=True)
    commit = models.CharField(max_length=64, blank=True, help_text="Resolved revision at the source")
    storage_path = models.CharField(max_length=1024, help_text="Where the model lives")
    files = models.JSONField(default=list, help_text="[{path, destination, size, media_type}, …]")
    manifest = models.TextField(blank=True, help_text="What the source wrote beside the files, if anything")
    total_bytes = models.BigIntegerField(default=0)
    download_task_id = models.CharField(max_length=32, blank=True, help_text="The download that completed it")
    completed_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "model_id"], name="unique_downloaded_model")]
        ordering = ["source", "model_id"]

    def __str__(self) -> str:
        return f"{self.source}:{self.model_id}"

    def stored(self) -> StoredModel:
        return StoredModel(model_id=self.model_id, source=self.source, revision=self.revision, commit=self.commit,
                           storage_path=self.storage_path, manifest=self.manifest,
                           files=[StoredFile(**file) for file in self.files])


class SearchVersion(models.Model):
    """One row: how many changes the catalog has seen, counted by triggers on its table (migration 0006), so a
    search index built at one version knows whether it still holds the catalog."""

    version = models.BigIntegerField(default=0)
