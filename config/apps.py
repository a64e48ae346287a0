from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class VeilAdminConfig(AdminConfig):
    """django.contrib.admin, with `config.admin.VeilAdminSite` as its site."""

    default_site = "config.admin.VeilAdminSite"


class ProjectConfig(AppConfig):
    """The project itself: registers the configuration checks of `config.checks` and what metrics count."""

    name = "config"
    label = "veil_config"
    verbose_name = "Veil configuration"

    def ready(self) -> None:
        from config import checks  # noqa: F401  (registers the system checks)
        from config.metrics import connect_signals

        connect_signals()
