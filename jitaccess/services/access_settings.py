"""Changes of a project's request and break-glass settings, and their audit record."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.services import Target, record_event
from identity.models import User
from identity.services import actor_for
from jitaccess.models import ProjectAccessSettings
from jitaccess.selectors.scopes import access_settings_state
from jitaccess.tickets import HINT_MAX_CHARS, pattern_problem
from masking.models import Project
from masking.services.policy import PolicyError


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


@transaction.atomic
def ticket_rules_save(
    *,
    project: Project,
    required: bool,
    pattern: str,
    hint: str,
    in_jira: bool,
    actor: User,
    channel: str,
) -> ProjectAccessSettings:
    """Set what a request's ticket must be in `project` (`selectors.tickets` enforces it), and
    record the change as every change of the project's request settings is. Locks the settings
    row, so two administrators saving at once are recorded one after the other."""
    pattern, hint = pattern.strip(), " ".join(hint.split())
    if pattern and (problem := pattern_problem(pattern)):
        raise PolicyError("pattern", problem)
    if len(hint) > HINT_MAX_CHARS:
        raise PolicyError("hint", f"is longer than {HINT_MAX_CHARS} characters")
    settings = ProjectAccessSettings.objects.select_for_update().filter(project=project).first()
    if settings is None:
        settings = ProjectAccessSettings(project=project)
    before = access_settings_state(settings)
    settings.ticket_required, settings.ticket_pattern = required, pattern
    settings.ticket_hint, settings.ticket_in_jira = hint, in_jira
    settings.save()
    record_access_settings_change(settings=settings, before=before, actor=actor, channel=channel)
    return settings
