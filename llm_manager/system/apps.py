from django.apps import AppConfig


class SystemConfig(AppConfig):
    name = "llm_manager.system"
    label = "system"
    verbose_name = "System"

    def ready(self) -> None:
        import psutil

        # psutil's non-blocking cpu_percent() measures since its previous call:
        # prime it so the first request gets a real figure without waiting.
        psutil.cpu_percent(interval=None)
