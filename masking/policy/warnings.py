"""Warnings about a plan: what it makes is valid, but may not work as meant.

They are shown with the plan (review page, `policy plan`, the plan API) and never refuse it: a
role may gain members after the change is applied.

- An approval policy (or a stage of one) needing more approvals than there are active people who
  could give them: requests it matches would wait until they time out. Checked for the approval
  policies a plan creates or updates, and for those whose approver roles it changes.
- Whatever a section says about the items a plan creates or updates (`Section.warnings`), for
  limits that the app owning the section holds (`masking` reads no other app's models).

The approval policies section belongs to `jitaccess`; its items are plain document items, read
here by their field names like every other part of the document.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from django.db.models import Q, QuerySet
from guardian.shortcuts import get_users_with_perms

from identity.models import User
from masking.models import Project
from masking.permissions import APPROVE_REQUEST, codename
from masking.policy.document import CREATE, UPDATE, sections

if TYPE_CHECKING:
    from masking.policy.diff import Plan

Document = Mapping[str, list[dict[str, Any]]]


def plan_warnings(target: Document, current: Document, plan: Plan) -> list[str]:
    """Warnings for `plan`, which takes `current` to `target`."""
    warnings: list[str] = []
    for sec in sections():
        section_plan = plan.section_plans.get(sec.name)
        if section_plan is None:
            continue
        for item in section_plan.creates + [new for _, new in section_plan.updates]:
            warnings += sec.warnings(item)
    warnings += approval_warnings(
        target, current, _changed(plan, "approval_policies"), _changed(plan, "roles")
    )
    return list(dict.fromkeys(warnings))


def _changed(plan: Plan, section: str) -> set[str]:
    """Keys of the items of `section` the plan creates or updates."""
    return {c.key for c in plan.changes if c.section == section and c.action in (CREATE, UPDATE)}


def approval_warnings(
    target: Document, current: Document, changed_policies: Iterable[str], changed_roles: Iterable[str]
) -> list[str]:
    """Approval policies (created or updated, or whose approver roles changed) that need more
    approvals than there are active people who could approve; for a policy in stages, each stage
    that does. Auto-approving and disabled policies route no request to approvers, so they are
    left out."""
    policies = target.get("approval_policies", current.get("approval_policies", []))
    roles = {r["name"]: r for r in target.get("roles", current.get("roles", []))}
    changed_policies, changed_roles = set(changed_policies), set(changed_roles)
    warnings = []
    for item in policies:
        key = f"{item['project']}: {item['title']}"
        if item.get("auto_approve") or not item.get("enabled", True):
            continue
        # A policy's stages each need their approvals; without stages, the policy is the one stage.
        parts = [(f" at stage {s['name']!r}", s) for s in item.get("stages") or []] or [("", item)]
        for where, part in parts:
            approver_roles = sorted(part.get("approver_roles") or [])
            if key not in changed_policies and not changed_roles & set(approver_roles):
                continue
            needed = int(part.get("approvals_required") or 1)
            shortfall = _shortfall(item["project"], approver_roles, needed, roles)
            if shortfall:
                warnings.append(
                    f"approval policy {key!r} needs {needed} approval{'s' if needed != 1 else ''}{where}, "
                    f"but {shortfall}: requests it matches cannot be approved until more people can "
                    "approve them"
                )
    return warnings


def _shortfall(
    project_key: str, approver_roles: list[str], needed: int, roles: Mapping[str, Mapping[str, Any]]
) -> str:
    """Who could give `needed` approvals, said when too few can ("" when enough can, or when the
    roles are not all defined: the reference check speaks to that)."""
    if approver_roles:
        if any(name not in roles for name in approver_roles):
            return ""  # refused by the reference check, or named by no document
        available = _role_members(roles[name] for name in approver_roles)
        names = ", ".join(repr(name) for name in approver_roles)
        several = len(approver_roles) > 1
        members = "no active member" if available == 0 else f"only {_people(available, 'member')}"
        who = f"its approver role{'s' if several else ''} {names} {'have' if several else 'has'} {members}"
        who += " between them" if several and available else ""
    else:
        project = Project.objects.filter(key=project_key).first()
        if project is None:
            return ""
        available = _project_approvers(project)
        anyone = "no active person" if available == 0 else f"only {_people(available, 'person')}"
        who = f"{anyone} may approve requests in project {project_key!r}"
    return who if needed > available else ""


def _people(count: int, noun: str) -> str:
    plural = {"member": "members", "person": "people"}[noun]
    return f"{count} active {noun if count == 1 else plural}"


def _role_members(role_items: Iterable[Mapping[str, Any]]) -> int:
    """Active people who hold any of the roles as the document defines them: named users, and
    members of the IdP groups (service accounts never approve)."""
    usernames: set[str] = set()
    groups: set[str] = set()
    for role in role_items:
        usernames.update(role.get("users", []))
        groups.update(role.get("groups", []))
    if not usernames and not groups:
        return 0
    people = User.objects.filter(is_active=True).filter(
        Q(username__in=usernames) | Q(groups__name__in=groups)
    )
    return people.distinct().count()


def _project_approvers(project: Project) -> int:
    """Active people granted approval on the project, directly or through a group (what approval
    falls back to when a policy names no role)."""
    people = cast(
        "QuerySet[User]",
        get_users_with_perms(project, only_with_perms_in=[codename(APPROVE_REQUEST)], with_group_users=True),
    )  # guardian annotates `Any | list[str]`; without `attach_perms` it is a queryset of users
    return User.objects.filter(pk__in=people.values("pk"), is_active=True).count()
