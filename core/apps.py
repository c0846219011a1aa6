from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The ground every app stands on: the envelope and errors, API keys, the lean middleware stack, schema and
    console helpers, host probes. It imports no other app of the project."""

    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        import psutil

        # psutil's non-blocking cpu_percent() measures since its previous call:
        # prime it so the first request gets a real figure without waiting.
        psutil.cpu_percent(interval=None)
