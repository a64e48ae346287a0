"""Who may read the audit log, and which projects of it.

Staff and superusers read everything, as does anyone holding the audit permission globally (a model
permission given to a user or group). Others read the projects on which they hold it as a
django-guardian object permission (directly or through an IdP group), and nothing if they hold it on
none.

`audit` imports no other Veil app: the app that owns projects (`masking`) registers, at start-up,
the project model and the permission's name (`register_projects`). guardian stores the project's
primary key and the log stores its key, so the one mapping needs the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Model
from guardian.shortcuts import get_objects_for_user

from audit.filters import EVERYTHING, AuditScope


@dataclass(frozen=True)
class AuditedProjects:
    """What the log's readers are scoped by: the project model (with a unique `key`) and the
    permission, `app_label.codename`, that lets a person read a project's events."""

    model: type[Model]
    permission: str


_projects: AuditedProjects | None = None


def register_projects(*, model: type[Model], permission: str) -> None:
    """Called once from the owning app's `ready()`."""
    global _projects
    _projects = AuditedProjects(model=model, permission=permission)


def audited_projects() -> AuditedProjects:
    if _projects is None:
        raise ImproperlyConfigured("no app registered the audited projects (audit.access.register_projects)")
    return _projects


def project_exists(key: str) -> bool:
    return audited_projects().model._default_manager.filter(key=key).exists()


def audit_scope_for(user: Any) -> AuditScope | None:
    """The reader's scope, or None if they may not read the audit log at all."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return None
    projects = audited_projects()
    if user.is_superuser or user.is_staff or user.has_perm(projects.permission):
        return EVERYTHING
    keys = frozenset(
        get_objects_for_user(
            user, projects.permission, klass=projects.model, with_superuser=False, accept_global_perms=False
        ).values_list("key", flat=True)
    )
    return AuditScope(projects=keys) if keys else None
