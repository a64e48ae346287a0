from django.apps import AppConfig


class MaskingConfig(AppConfig):
    name = "masking"
    verbose_name = "Masking"

    def ready(self) -> None:
        from masking import principal_checks  # noqa: F401  registers the system check
