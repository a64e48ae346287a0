"""Who may change which part of the policy, and which changes need a second person.

Rules, semantic types and roles are global: they mask columns in every project, so changing them
takes `administer_policy` on every project (or the permission granted globally), and the
two-person rule of any project applies to them. Exemptions and approval policies belong to one
project each.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from django.db.models import Model, Q, QuerySet
from guardian.shortcuts import get_objects_for_user, get_users_with_perms

from identity.models import User
from masking.models import Project, ProjectPolicySettings
from masking.permissions import ADMINISTER_POLICY

_M = TypeVar("_M", bound=Model)


def administered_projects(user: User) -> set[str]:
    """Keys of the projects where the person administers policy."""
    return set(
        get_objects_for_user(user, ADMINISTER_POLICY, klass=Project, accept_global_perms=True).values_list(
            "key", flat=True
        )
    )


def columns_scope(user: User) -> set[str] | None:
    """Projects whose catalog columns and policy items (exemptions, approval policies, project
    settings) the person may read: those they administer, or None (every project) when they hold
    the permission globally."""
    return None if user.has_perm(ADMINISTER_POLICY) else administered_projects(user)


def readable_items(queryset: QuerySet[_M], user: User) -> QuerySet[_M]:
    """Exemptions or approval policies (`project` foreign key) of the projects in `columns_scope`:
    what a policy page may list or open for the person. Another project's items are not found."""
    scope = columns_scope(user)
    return queryset if scope is None else queryset.filter(project__key__in=sorted(scope))


def administers_any(user: User) -> bool:
    return bool(user.is_authenticated and (user.has_perm(ADMINISTER_POLICY) or administered_projects(user)))


def may_administer(user: User, projects: Iterable[str], *, is_global: bool) -> bool:
    """True when the person may change items of these projects (and global items if `is_global`)."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.has_perm(ADMINISTER_POLICY):  # granted globally (or a superuser)
        return True
    mine = administered_projects(user)
    if is_global:
        every = set(Project.objects.values_list("key", flat=True))
        if not every or not every <= mine:
            return False
    return set(projects) <= mine


def policy_deciders(projects: Iterable[str], *, is_global: bool, limit: int) -> Iterator[User]:
    """Active people with a verified email who may change items of these projects (and global items
    if `is_global`), at most `limit` candidates looked at, in primary-key order. Anyone who may has
    the permission globally or on every affected project, so one affected project's holders cover
    them all."""
    projects = list(projects)
    app_label, codename = ADMINISTER_POLICY.split(".")
    holders = User.objects.filter(
        Q(is_superuser=True)
        | Q(user_permissions__codename=codename, user_permissions__content_type__app_label=app_label)
        | Q(groups__permissions__codename=codename, groups__permissions__content_type__app_label=app_label)
    )
    project = Project.objects.filter(key__in=projects).order_by("key").first()
    if project is None and is_global:
        project = Project.objects.order_by("key").first()
    if project is not None:
        holders = holders | User.objects.filter(
            pk__in=get_users_with_perms(project, only_with_perms_in=[codename], with_group_users=True)
        )
    for user in holders.filter(is_active=True, email_verified=True).distinct().order_by("pk")[:limit]:
        if may_administer(user, projects, is_global=is_global):
            yield user


def needs_second_person(projects: Iterable[str], *, is_global: bool) -> bool:
    """Whether a change touching these projects is held for approval, by the settings now in force
    (so turning the rule off needs the second person, turning it on does not)."""
    guarded = ProjectPolicySettings.objects.filter(two_person_rule=True)
    if is_global:
        return guarded.exists()
    return guarded.filter(project__key__in=list(projects)).exists()
