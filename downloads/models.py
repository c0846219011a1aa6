import uuid

from django.db import models

from catalog.models import source_field


def new_task_id() -> str:
    return f"task_{uuid.uuid4().hex[:12]}"


class DownloadStatus(models.TextChoices):
    PENDING = "pending"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_DOWNLOAD_STATUSES = (DownloadStatus.PENDING, DownloadStatus.DOWNLOADING, DownloadStatus.PAUSED)


class LocalTasks(models.Manager):
    """The tasks of this service's own downloader: not a cluster node's fetch of a model into its own cache."""

    def get_queryset(self):
        return super().get_queryset().filter(node="")


class DownloadTask(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_task_id, editable=False)
    model_id = models.CharField(max_length=255)
    source = source_field()
    revision = models.CharField(max_length=255, default="main", blank=True)
    include = models.JSONField(default=list, blank=True, help_text="Glob patterns of files to fetch")
    status = models.CharField(max_length=20, choices=DownloadStatus.choices, default=DownloadStatus.PENDING)
    total_bytes = models.BigIntegerField(default=0)
    downloaded_bytes = models.BigIntegerField(default=0)
    speed_bps = models.FloatField(default=0)
    eta_seconds = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    commit = models.CharField(max_length=64, blank=True, help_text="Resolved revision at the source")
    storage_path = models.CharField(max_length=1024, blank=True, help_text="Where the finished model lives")
    manifest = models.TextField(blank=True, help_text="What the source writes beside the files at the end (a registry manifest)")
    lease = models.CharField(max_length=32, blank=True, help_text="Token of the worker job allowed to transfer")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life of that job")
    imported = models.BooleanField(default=False, help_text="Registered in place by `import`: its files are not ours")
    node = models.CharField(max_length=255, blank=True, help_text="The cluster node fetching the model into its own "
                                                                  "cache for a deployment (empty: this service)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = LocalTasks()  # the queue, the catalog's "downloaded", storage: this service's own tasks
    everywhere = models.Manager()  # what the API, the live view and the console show: the nodes' fetches too

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["status", "created_at"]), models.Index(fields=["source", "model_id"])]
        base_manager_name = default_manager_name = "everywhere"

    def __str__(self) -> str:
        return f"{self.id} {self.source}:{self.model_id} ({self.status})"

    @property
    def progress(self) -> float:
        if self.status == DownloadStatus.COMPLETED:
            return 100.0
        if not self.total_bytes:
            return 0.0
        return round(min(100.0, 100.0 * self.downloaded_bytes / self.total_bytes), 1)


class DownloadFile(models.Model):
    """One remote file of a task, with the state needed to resume and verify it."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DOWNLOADING = "downloading"
        COMPLETED = "completed"
        FAILED = "failed"

    task = models.ForeignKey(DownloadTask, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1024, help_text="Path in the repository, or the layer digest")
    url = models.TextField(blank=True)
    destination = models.CharField(max_length=2048, blank=True, help_text="Final path of the file")
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    etag = models.CharField(max_length=128, blank=True)
    media_type = models.CharField(max_length=255, blank=True)
    downloaded_bytes = models.BigIntegerField(default=0)
    parts = models.JSONField(default=list, blank=True, help_text="[[start, end, done_bytes], …] of parallel ranges")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["task", "path"]
        constraints = [models.UniqueConstraint(fields=["task", "path"], name="unique_task_file")]

    def __str__(self) -> str:
        return self.path
