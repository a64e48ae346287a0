"""Who may decide, revoke or review a request: the permission checks the services enforce and the
pages ask before offering a button."""

from __future__ import annotations

from typing import cast

from django.db.models import QuerySet
from guardian.core import ObjectPermissionChecker
from guardian.shortcuts import get_users_with_perms

from identity.models import User
from identity.selectors import users_in_roles
from jitaccess.models import AccessRequest
from jitaccess.selectors.oncall import request_on_call
from jitaccess.states import Action
from masking.models import Project
from masking.permissions import ADMINISTER_POLICY, APPROVE_REQUEST, codename

ApproverPools = dict[tuple[object, ...], list[User]]


def eligible_approvers(
    request: AccessRequest, pools: ApproverPools | None = None, *, oncall: bool = True
) -> list[User]:
    """Who may approve: members of the policy's approver roles; without roles, people with
    `approve_request` on the project; with no policy, the project's administrators. Also whoever
    is on call now for the policy's on-call schedule (asked at each call; `oncall=False` leaves
    them out where the provider may not be asked, inside Slack's 3-second window). Never the
    requester.

    `pools`, a dict the caller keeps across many requests (a queue), holds each distinct pool of
    candidates once, so judging N requests costs one query per distinct pool, not one per request."""
    if request.approver_roles:
        key: tuple[object, ...] = ("roles", *sorted(request.approver_roles))
    else:
        key = ("perm", APPROVE_REQUEST if request.policy_id else ADMINISTER_POLICY, request.project_id)
    pools = {} if pools is None else pools
    if key not in pools:
        if request.approver_roles:
            pools[key] = list(users_in_roles(request.approver_roles))
        else:
            pools[key] = list(people_with_perm(request.project, str(key[1])))
    candidates = pools[key]
    if oncall and request.oncall_schedule_id:
        known = {p.pk for p in candidates}
        candidates = candidates + [p for p in request_on_call(request, pools) if p.pk not in known]
    if request.stage > 1:  # who approved an earlier stage never decides a later one (`stages`)
        earlier = {a.approver_subject for a in request.approvals.all() if a.stage < request.stage}
        candidates = [p for p in candidates if p.canonical_subject not in earlier]
    return [
        p for p in candidates if p.is_active and p.canonical_subject != request.requester.canonical_subject
    ]


def people_with_perm(project: Project, perm: str) -> QuerySet[User]:
    """People granted `perm` on the project, directly or through a group (superusers only if granted).
    guardian annotates the result `Any | list[str]`; without `attach_perms` it is a queryset of users."""
    people = get_users_with_perms(project, only_with_perms_in=[codename(perm)], with_group_users=True)
    return cast("QuerySet[User]", people)


def can_approve(
    request: AccessRequest, user: User, pools: ApproverPools | None = None, *, oncall: bool = True
) -> bool:
    """Whether `user` may decide the request. The on-call provider is asked only about someone
    the approver roles or permissions do not already name."""
    if user.canonical_subject == request.requester.canonical_subject:
        return False
    if any(p.pk == user.pk for p in eligible_approvers(request, pools, oncall=False)):
        return True
    return oncall and any(p.pk == user.pk for p in eligible_approvers(request, pools))


def can_revoke(request: AccessRequest, user: User) -> bool:
    """An approver of the request or an administrator of its project; `grant_end` enforces it and the
    pages use it to decide whether to offer the button."""
    return can_approve(request, user) or user.has_perm(ADMINISTER_POLICY, request.project)


def end_refusal(request: AccessRequest, user: User, action: str) -> str:
    """Why `user` may not revoke or relinquish (`action`) the request's grant; "" when they may.
    `grant_end` enforces it; the confirmation page asks it before offering the button."""
    if action == Action.RELINQUISH and request.requester_id != user.pk:
        return "Only the requester can relinquish a grant."
    if action == Action.REVOKE and not can_revoke(request, user):
        return "Only an approver or a project administrator can revoke a grant."
    return ""


def can_review_breakglass(
    request: AccessRequest, user: User, perms: ObjectPermissionChecker | None = None
) -> bool:
    """A project administrator other than the person who broke the glass (by IdP subject, so not
    their second account either): the two checks `breakglass_review` makes, each with its message.
    `perms`: the person's guardian checker with the projects prefetched, when judging a list."""
    other_person = request.requester.canonical_subject != user.canonical_subject
    return other_person and (perms or user).has_perm(ADMINISTER_POLICY, request.project)
