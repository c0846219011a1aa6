from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class SystemConfig(AppConfig):
    name = "llm_manager.system"
    label = "system"
    verbose_name = "System"

    def ready(self) -> None:
        import psutil

        # psutil's non-blocking cpu_percent() measures since its previous call:
        # prime it so the first request gets a real figure without waiting.
        psutil.cpu_percent(interval=None)


class ConsoleAdminConfig(admin_apps.AdminConfig):
    """The Django admin, with the operators' console as its site (named in INSTALLED_APPS)."""

    default = False
    default_site = "llm_manager.console.ConsoleAdminSite"
