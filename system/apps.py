from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class SystemConfig(AppConfig):
    """The top of the stack: what spans the apps (health and figures of the whole service, the console's site
    and dashboard, the `serve` command). Nothing imports it."""

    name = "system"
    verbose_name = "System"


class ConsoleAdminConfig(admin_apps.AdminConfig):
    """The Django admin, with the operators' console as its site (named in INSTALLED_APPS)."""

    default = False
    default_site = "system.console.ConsoleAdminSite"
