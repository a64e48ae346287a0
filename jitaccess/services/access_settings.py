"""The audit record of a change of a project's request and break-glass settings."""

from __future__ import annotations

from typing import Any

from audit.services import Target, record_event
from identity.models import User
from identity.services import actor_for
from jitaccess.models import ProjectAccessSettings
from jitaccess.selectors.scopes import access_settings_state


def record_access_settings_change(
    *, settings: ProjectAccessSettings, before: dict[str, Any], actor: User, channel: str
) -> None:
    """Record a change of a project's access settings (saved by the caller, in its transaction):
    who may break the glass and for how long, the caps and who is alerted decide who sees PII.
    `before` is `selectors.scopes.access_settings_state` of the settings as they were."""
    after = access_settings_state(settings)
    if after == before:
        return
    changed = sorted(k for k in after if after[k] != before.get(k))
    record_event(
        action="project.access_settings_updated",
        actor=actor_for(actor),
        channel=channel,
        target=Target("project", settings.project.key, settings.project.title),
        project=settings.project.key,
        detail={"before": {k: before.get(k) for k in changed}, "after": {k: after[k] for k in changed}},
    )
