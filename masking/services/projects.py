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
def project_update(
    *,
    project: Project,
    title: str,
    description: str,
    actor: Actor,
    channel: str,
    inference_guard: str | None = None,
) -> Project:
    """Rename or re-describe a project (not its key), or set its data path's inference guard
    (None keeps it). Recorded with what changed."""
    locked = Project.objects.select_for_update().get(pk=project.pk)
    guard = locked.inference_guard if inference_guard is None else inference_guard
    if guard not in Project.InferenceGuard.values:
        raise ValueError(f"inference_guard must be one of {', '.join(Project.InferenceGuard.values)}")
    before = {
        "title": locked.title,
        "description": locked.description,
        "inference_guard": locked.inference_guard,
    }
    after = {"title": title, "description": description, "inference_guard": guard}
    changed = [k for k in after if after[k] != before[k]]
    if not changed:
        return locked
    for name in changed:
        setattr(locked, name, after[name])
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
