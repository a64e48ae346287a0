from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "identity"
    verbose_name = "Identity"

    def ready(self) -> None:
        from audit.events import register_event_types
        from identity import schema, signals  # noqa: F401  (sign-in auditing, OpenAPI auth scheme)
        from identity.events import EVENT_TYPES

        register_event_types(EVENT_TYPES)
