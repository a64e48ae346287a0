from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from audit.events import EVENT_TYPES, register_event_types

        register_event_types(EVENT_TYPES)
