from django.apps import AppConfig


class JitaccessConfig(AppConfig):
    name = "jitaccess"
    verbose_name = "Just-in-time access"

    def ready(self) -> None:
        from audit.events import register_event_types
        from jitaccess import policy_sections  # noqa: F401  registers approval policies in the policy document
        from jitaccess.events import EVENT_TYPES

        register_event_types(EVENT_TYPES)
        # Policy changes held by the two-person rule are announced in Slack. Resolved at call time,
        # so that the task module (and Celery) load only when a change is filed or decided.
        from masking.services.policy_changes import policy_change_listeners

        if _announce_policy_change not in policy_change_listeners:
            policy_change_listeners.append(_announce_policy_change)


def _announce_policy_change(change_id: int) -> None:
    from jitaccess.slack.tasks import enqueue_policy_message

    enqueue_policy_message(change_id)
