"""Project writes: a project is added and named by hand (catalog pushes attach databases to it).

Its key is `resource.project_id` in conditions and the name policy files use, so it is fixed once
the project exists. Who may do what in a project is `identity.services.object_permissions_set`.
"""

from __future__ import annotations

from django.db import transaction

from audit.services import Actor, Target, record_event
from masking.models import Project


@transaction.atomic
def project_create(*, key: str, title: str, description: str, actor: Actor, channel: str) -> Project:
    project = Project.objects.create(key=key, title=title, description=description)
    record_event(
        action="project.created",
        actor=actor,
        channel=channel,
        target=Target("project", project.key, str(project)),
        project=project.key,
        detail={"title": title, "description": description},
    )
    return project


@transaction.atomic
def project_update(*, project: Project, title: str, description: str, actor: Actor, channel: str) -> Project:
    """Rename or re-describe a project (not its key). Recorded with what changed."""
    locked = Project.objects.select_for_update().get(pk=project.pk)
    before = {"title": locked.title, "description": locked.description}
    after = {"title": title, "description": description}
    changed = [k for k in after if after[k] != before[k]]
    if not changed:
        return locked
    locked.title, locked.description = title, description
    locked.save(update_fields=changed)
    record_event(
        action="project.updated",
        actor=actor,
        channel=channel,
        target=Target("project", locked.key, str(locked)),
        project=locked.key,
        detail={"before": {k: before[k] for k in changed}, "after": {k: after[k] for k in changed}},
    )
    return locked
