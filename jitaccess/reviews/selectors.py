"""Reads for access reviews, and who may see and answer what. Every page and Slack click goes through
these; the service checks `answer_refusal` again under its lock.

Reviewers are the project's approvers and policy administrators: people with `approve_request` or
`administer_policy` on the project (directly, through an IdP group, or globally) and the members of
the approver roles of its enabled approval policies. They are the people already trusted to decide
who sees the project's data. A campaign and all its items are visible to the people who oversee the
project (those permissions, or `view_audit`); anyone else sees only the items given to them.
"""

from __future__ import annotations

from typing import cast

from django.contrib.auth.models import Permission
from django.db.models import Q, QuerySet
from guardian.shortcuts import get_objects_for_user, get_users_with_perms

from identity.models import User
from identity.selectors import users_in_roles
from jitaccess.models import ApprovalPolicy
from jitaccess.reviews.models import (
    AccessReviewCampaign,
    AccessReviewItem,
    AccessReviewSettings,
    CampaignState,
    ItemState,
)
from jitaccess.reviews.population import people_whose_access
from masking.models import Project
from masking.permissions import ADMINISTER_POLICY, APPROVE_REQUEST, VIEW_AUDIT, codename

_REVIEWER_PERMS = (APPROVE_REQUEST, ADMINISTER_POLICY)
_OVERSIGHT_PERMS = [APPROVE_REQUEST, ADMINISTER_POLICY, VIEW_AUDIT]


def review_settings_for(project: Project) -> AccessReviewSettings:
    """The project's settings, or the defaults (unsaved, off) when it has none."""
    saved = AccessReviewSettings.objects.filter(project=project).first()
    return saved or AccessReviewSettings(project=project)


def reviewers_of(project: Project) -> list[User]:
    """Active approvers and policy administrators of the project, by username."""
    names = [codename(p) for p in _REVIEWER_PERMS]
    by_object = cast(
        "QuerySet[User]",
        get_users_with_perms(project, only_with_perms_in=names, with_group_users=True, with_superusers=False),
    )
    global_perm = Permission.objects.filter(content_type__app_label="masking", codename__in=names)
    by_global = User.objects.filter(
        Q(user_permissions__in=global_perm) | Q(groups__permissions__in=global_perm)
    )
    roles = ApprovalPolicy.objects.filter(project=project, enabled=True).values_list(
        "approver_roles__name", flat=True
    )
    by_role = users_in_roles(name for name in roles if name)
    people = {u.pk: u for query in (by_object, by_global, by_role) for u in query.filter(is_active=True)}
    return sorted(people.values(), key=lambda u: u.username)


def oversees(user: User, project: Project) -> bool:
    return any(user.has_perm(p, project) or user.has_perm(p) for p in _OVERSIGHT_PERMS)


def administers(user: User, project: Project) -> bool:
    return bool(user.has_perm(ADMINISTER_POLICY, project) or user.has_perm(ADMINISTER_POLICY))


def projects_administered_by(user: User) -> QuerySet[Project]:
    """Projects whose review settings the person may change (`administer_policy`)."""
    return get_objects_for_user(user, ADMINISTER_POLICY, klass=Project, accept_global_perms=True).order_by(
        "key"
    )


def campaigns_visible_to(user: User) -> QuerySet[AccessReviewCampaign]:
    """Campaigns of the projects the person oversees, and those with an item given to them."""
    overseen = get_objects_for_user(
        user, _OVERSIGHT_PERMS, klass=Project, any_perm=True, accept_global_perms=True
    )
    return (
        AccessReviewCampaign.objects.filter(Q(project__in=overseen) | Q(items__reviewer=user))
        .select_related("project")
        .distinct()
    )


def campaign_for(user: User, campaign_id: int) -> AccessReviewCampaign:
    """The campaign if the person may see it; DoesNotExist otherwise (its existence never leaks)."""
    return campaigns_visible_to(user).get(pk=campaign_id)


def items_visible_in(campaign: AccessReviewCampaign, user: User) -> QuerySet[AccessReviewItem]:
    items = campaign.items.select_related("reviewer", "decided_by")
    return items if oversees(user, campaign.project) else items.filter(reviewer=user)


def item_for(user: User, item_id: int) -> AccessReviewItem:
    """The item if the person may see it (as `items_visible_in`); DoesNotExist otherwise."""
    item = AccessReviewItem.objects.select_related("campaign__project", "reviewer").get(pk=item_id)
    if item.reviewer_id != user.pk and not oversees(user, item.campaign.project):
        raise AccessReviewItem.DoesNotExist
    return item


def answer_refusal(item: AccessReviewItem, user: User) -> str:
    """Why the person may not answer the item now, or "" when they may. The item's reviewer answers
    it while the campaign is open; once escalated, a policy administrator of the project does. No
    one answers for their own access. An item already answered is not refused here: answering it
    again the same way changes nothing, and another way is `AlreadyAnswered`."""
    if not user.is_active:
        return "Your account is deactivated."
    if item.state == ItemState.PENDING and item.reviewer_id != user.pk:
        reviewer = item.reviewer or "nobody (no reviewer could be given it)"
        return f"This item is not yours to answer: it is {reviewer}'s."
    if item.state == ItemState.ESCALATED and not administers(user, item.campaign.project):
        return "This item was escalated: a policy administrator of the project answers it now."
    if item.is_open and user.pk in people_whose_access(item.member_key):
        return "This is your own access: someone else reviews it."
    return ""


def items_waiting_for(user: User) -> list[AccessReviewItem]:
    """Items the person may answer now: theirs in open campaigns, and escalated ones of projects
    they administer (not their own access), oldest campaign first."""
    mine = Q(state=ItemState.PENDING, reviewer=user, campaign__state=CampaignState.OPEN)
    administered = get_objects_for_user(user, ADMINISTER_POLICY, klass=Project, accept_global_perms=True)
    escalated = Q(state=ItemState.ESCALATED, campaign__project__in=administered)
    items = AccessReviewItem.objects.filter(mine | escalated).select_related("campaign__project", "reviewer")
    if not user.is_active:
        return []
    own: dict[str, bool] = {}  # the query checked the rest of `answer_refusal`; this, once per member
    waiting = []
    for item in items.order_by("campaign__opened_at", "-proposed_removal", "access_label", "member_label"):
        if item.member_key not in own:
            own[item.member_key] = user.pk in people_whose_access(item.member_key)
        if not own[item.member_key]:
            waiting.append(item)
    return waiting


def open_counts(campaign: AccessReviewCampaign) -> dict[str, int]:
    """How many items of the campaign are in each state (every state present, zero or not)."""
    counts = dict.fromkeys(ItemState.values, 0)
    for state in campaign.items.values_list("state", flat=True):
        counts[state] += 1
    return counts
