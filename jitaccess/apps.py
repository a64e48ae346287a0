from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from audit.services import Actor
    from identity.models import User


class JitaccessConfig(AppConfig):
    name = "jitaccess"
    verbose_name = "Just-in-time access"

    def ready(self) -> None:
        from audit.events import register_event_types
        from jitaccess.events import EVENT_TYPES
        from jitaccess.policy import sections  # noqa: F401  registers approval policies in the policy document

        register_event_types(EVENT_TYPES)
        # Policy changes held by the two-person rule are announced in Slack. Resolved at call time,
        # so that the task module (and Celery) load only when a change is filed or decided.
        from masking.services.policy_changes import policy_change_listeners

        if _announce_policy_change not in policy_change_listeners:
            policy_change_listeners.append(_announce_policy_change)
        # A person the IdP deactivates (directory sync) loses their grants and pending requests at once.
        from identity.directory import deactivation_handlers

        if _end_requests_of_deactivated not in deactivation_handlers:
            deactivation_handlers.append(_end_requests_of_deactivated)


def _end_requests_of_deactivated(person: User, actor: Actor, channel: str) -> None:
    from jitaccess.services.grants import requests_end_for_deactivated

    requests_end_for_deactivated(person, actor, channel)


def _announce_policy_change(change_id: int) -> None:
    from jitaccess.slack.tasks import enqueue_policy_message

    enqueue_policy_message(change_id)
