"""Who may change which part of the policy, and which changes need a second person.

Rules, semantic types and roles are global: they mask columns in every project, so changing them
takes `administer_policy` on every project (or the permission granted globally), and the
two-person rule of any project applies to them. Exemptions and approval policies belong to one
project each.
"""

from __future__ import annotations

from collections.abc import Iterable

from guardian.shortcuts import get_objects_for_user

from identity.models import User
from masking.models import Project, ProjectPolicySettings

PERMISSION = "masking.administer_policy"


def administered_projects(user: User) -> set[str]:
    """Keys of the projects where the person administers policy."""
    return set(
        get_objects_for_user(user, PERMISSION, klass=Project, accept_global_perms=True).values_list(
            "key", flat=True
        )
    )


def administers_any(user: User) -> bool:
    return bool(user.is_authenticated and (user.has_perm(PERMISSION) or administered_projects(user)))


def may_administer(user: User, projects: Iterable[str], *, is_global: bool) -> bool:
    """True when the person may change items of these projects (and global items if `is_global`)."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.has_perm(PERMISSION):  # granted globally (or a superuser)
        return True
    mine = administered_projects(user)
    if is_global:
        every = set(Project.objects.values_list("key", flat=True))
        if not every or not every <= mine:
            return False
    return set(projects) <= mine


def needs_second_person(projects: Iterable[str], *, is_global: bool) -> bool:
    """Whether a change touching these projects is held for approval, by the settings now in force
    (so turning the rule off needs the second person, turning it on does not)."""
    guarded = ProjectPolicySettings.objects.filter(two_person_rule=True)
    if is_global:
        return guarded.exists()
    return guarded.filter(project__key__in=list(projects)).exists()
