from django.apps import AppConfig


class MaskingConfig(AppConfig):
    name = "masking"
    verbose_name = "Masking"

    def ready(self) -> None:
        from audit.access import register_projects
        from audit.events import register_event_types
        from audit.reports.agents import register_column_projects
        from masking import principal_checks  # noqa: F401  registers the system check
        from masking.events import EVENT_TYPES
        from masking.models import Project
        from masking.permissions import VIEW_AUDIT
        from masking.policy import sections  # noqa: F401  registers masking's parts of the policy document
        from masking.selectors import database_projects

        register_event_types(EVENT_TYPES)
        # audit scopes its readers by project without importing masking.
        register_projects(model=Project, permission=VIEW_AUDIT)
        register_column_projects(database_projects)
        # Directory sync changed who is in a group or who is active: every process re-reads principals.
        from identity.directory import membership_handlers

        if _principals_changed not in membership_handlers:
            membership_handlers.append(_principals_changed)


def _principals_changed() -> None:
    from masking.services.policy import bump_epoch

    bump_epoch(grants=True)
