import uuid

from django.db import models

from catalog.models import source_field


def new_deployment_id() -> str:
    return f"deploy_{uuid.uuid4().hex[:12]}"


class DeploymentStatus(models.TextChoices):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"


class DeploymentTask(models.TextChoices):
    GENERATE = "generate", "generate (chat and completions)"
    EMBED = "embed", "embed (embeddings)"


class RestartPolicy(models.TextChoices):
    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


class Deployment(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_deployment_id, editable=False)
    name = models.CharField(max_length=255, blank=True)
    model_id = models.CharField(max_length=255)
    model_source = source_field()
    engine = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=20, choices=DeploymentStatus.choices, default=DeploymentStatus.STARTING)
    host = models.CharField(max_length=255, default="127.0.0.1")
    port = models.PositiveIntegerField(null=True, blank=True)
    gpu_memory_utilization = models.FloatField(default=0.9)
    max_model_len = models.PositiveIntegerField(null=True, blank=True)
    options = models.JSONField(default=dict, blank=True, help_text="Further engine settings from the request")
    idle_timeout = models.PositiveIntegerField(null=True, blank=True,
                                               help_text="Seconds without a request after which it stops; empty: never")
    last_request_at = models.DateTimeField(null=True, blank=True, help_text="The proxy's last request to it")
    stop_reason = models.CharField(max_length=16, blank=True, help_text="requested or idle, once stopped")
    gpu_ids = models.JSONField(default=list, blank=True, help_text="The GPUs it was placed on (CUDA_VISIBLE_DEVICES)")
    node = models.CharField(max_length=255, blank=True, help_text="The cluster node it runs on (empty: this machine)")
    task = models.CharField(max_length=16, choices=DeploymentTask.choices, default=DeploymentTask.GENERATE)
    model_file = models.CharField(max_length=1024, blank=True,
                                  help_text="The model file deployed, of several in the repository (GGUF)")
    model_file_reason = models.CharField(max_length=255, blank=True, help_text="Why that file")
    engine_args = models.JSONField(default=list, blank=True, help_text="Extra engine flags, after the service's own")
    env = models.JSONField(default=dict, blank=True, help_text="Extra environment variables of the engine")
    # What the proxy needs, set when the engine is started.
    engine_model = models.CharField(max_length=1024, blank=True, help_text="What requests to the engine name as `model`")
    probe_path = models.CharField(max_length=255, blank=True, help_text="Answers 200 once the model is loaded")
    chat_problem = models.CharField(max_length=500, blank=True, help_text="Why chat is not supported, where not")
    supports_chat = models.BooleanField(null=True, blank=True,
                                        help_text="Whether the engine can format chats (false: completions only)")
    restart_policy = models.CharField(max_length=20, choices=RestartPolicy.choices, default=RestartPolicy.ON_FAILURE)
    max_restarts = models.PositiveIntegerField(default=3)
    restart_count = models.PositiveIntegerField(default=0)
    pid = models.PositiveIntegerField(null=True, blank=True)
    log_path = models.CharField(max_length=1024, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.id} {self.model_id} ({self.status})"


class Node(models.Model):
    """What the service keeps of a cluster node beyond Ray's view of it (Ray owns membership and liveness)."""

    name = models.CharField(primary_key=True, max_length=255)
    ray_node_id = models.CharField(max_length=64, blank=True, help_text="Its Ray node id when last seen alive")
    address = models.CharField(max_length=255, blank=True)
    draining = models.BooleanField(default=False, help_text="Takes no new deployments; its own are moved away")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name
