"""Who may read the audit log, and which projects of it.

Staff and superusers read everything, as does anyone holding `masking.view_audit` globally (a
model permission given to a user or group). Others read the projects on which they hold the
django-guardian object permission `masking.view_audit` (directly or through an IdP group), and
nothing if they hold it on none.

`audit` imports no other Veil app. The project model is looked up by name through the app registry
(`apps.get_model("masking", "Project")`) at call time: guardian stores the project's primary key and
the log stores its key, so the one mapping needs the model, not an import of `masking`.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from guardian.shortcuts import get_objects_for_user

from audit.filters import EVERYTHING, AuditScope

VIEW_AUDIT = "masking.view_audit"


def audit_scope_for(user: Any) -> AuditScope | None:
    """The reader's scope, or None if they may not read the audit log at all."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return None
    if user.is_superuser or user.is_staff or user.has_perm(VIEW_AUDIT):
        return EVERYTHING
    project_model = apps.get_model("masking", "Project")
    keys = frozenset(
        get_objects_for_user(
            user, VIEW_AUDIT, klass=project_model, with_superuser=False, accept_global_perms=False
        ).values_list("key", flat=True)
    )
    return AuditScope(projects=keys) if keys else None
