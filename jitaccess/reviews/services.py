"""Writes for access reviews: settings, opening a campaign, answering an item, the deadline. One
module (a little over 600 lines) because the three writes share one locking contract, below.

Each writes its audit event in its own transaction. Removing access goes through masking's own
services (`exemption_update`, `exemption_revoke`, `role_save`), inside one `policy_change`, so a
removal is a policy version with the usual before/after event, beside this app's
`access_review.item_removed`. Removals are not held by the two-person rule: they only take access
away, and the reviewer's answer is the decision the campaign exists to get.

Locking contract, in this order: the policy head (only when something may be removed), the
campaign row, then the item row. Slack messages follow on commit (`services._announce`).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import Channel
from audit.services import SYSTEM, Actor, Target, record_event
from identity.models import Role, User
from identity.services import actor_for
from jitaccess.reviews.models import (
    AccessReviewCampaign,
    AccessReviewItem,
    AccessReviewSettings,
    CampaignState,
    ItemKind,
    ItemState,
    OnDeadline,
)
from jitaccess.reviews.population import (
    Holding,
    holdings_of,
    last_unmask_of,
    last_unmasks,
    people_whose_access,
)
from jitaccess.reviews.selectors import answer_refusal, oversees, reviewers_of
from masking.models import Exemption, Project
from masking.services.policy import exemption_revoke, exemption_update
from masking.services.roles import role_save
from masking.services.versions import policy_change

logger = logging.getLogger(__name__)
KEEP, REMOVE = "keep", "remove"
DEADLINE_NOTE = "No answer by the deadline"
NOTE_LIMIT = 2000
SYNC_MESSAGE_TASK = "jitaccess.reviews.tasks.sync_access_review_message"


class ReviewError(ValueError):
    """Refused before anything was written; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotYourItem(PermissionError):
    """The person may not answer this item (the message says why, for them to read). Recorded as
    `access_review.answer_refused` before it is raised."""


class AlreadyAnswered(ValueError):
    """The item was answered (or removed at the deadline) already, differently or by someone else."""


@dataclass(frozen=True)
class Answer:
    item: AccessReviewItem
    repeated: bool  # the person had already answered the same: nothing changed


# --- settings ----------------------------------------------------------------------------------


def _settings_state(settings: AccessReviewSettings) -> dict[str, Any]:
    return {
        "enabled": settings.enabled,
        "every_days": settings.every_days,
        "answer_days": settings.answer_days,
        "on_deadline": settings.on_deadline,
        "unused_days": settings.unused_days,
        "next_campaign_at": settings.next_campaign_at,
    }


@transaction.atomic
def review_settings_save(
    *,
    project: Project,
    enabled: bool,
    every_days: int,
    answer_days: int,
    on_deadline: str,
    unused_days: int,
    next_campaign_at: datetime | None,
    changed_by: User,
    channel: str,
) -> AccessReviewSettings:
    """Set when the project's campaigns open and how they end. Turned on without a date, the first
    campaign opens at the next sweep (within a minute)."""
    if not 1 <= answer_days <= 365:
        raise ReviewError("answer_days", "must be between 1 and 365 days")
    if not answer_days < every_days <= 3660:
        raise ReviewError("every_days", "must be longer than the time to answer, and at most 3660 days")
    if on_deadline not in OnDeadline.values:
        raise ReviewError("on_deadline", f"must be one of {', '.join(OnDeadline.values)}")
    if not 0 <= unused_days <= 3660:
        raise ReviewError("unused_days", "must be between 0 (never propose) and 3660 days")
    settings, _ = AccessReviewSettings.objects.select_for_update().get_or_create(project=project)
    before = _settings_state(settings)
    settings.enabled, settings.every_days, settings.answer_days = enabled, every_days, answer_days
    settings.on_deadline, settings.unused_days = on_deadline, unused_days
    settings.next_campaign_at = next_campaign_at or (timezone.now() if enabled else None)
    settings.save()
    after = _settings_state(settings)
    if after != before:
        record_event(
            action="access_review.settings_changed",
            actor=actor_for(changed_by),
            channel=channel,
            target=Target("project", project.key, str(project)),
            project=project.key,
            detail={"before": before, "after": after},
        )
    return settings


# --- opening -----------------------------------------------------------------------------------


def campaign_open(*, project: Project, actor: Actor, channel: str) -> AccessReviewCampaign:
    """Open a campaign now: snapshot who holds unmask access, give each holding to a reviewer,
    propose unused access for removal, and DM the reviewers once it commits. Moves the project's
    next campaign on by `every_days`. Refused while another campaign of the project is open."""
    settings = AccessReviewSettings.objects.filter(project=project).first() or AccessReviewSettings(
        project=project
    )
    now = timezone.now()
    since = now - timedelta(days=settings.unused_days)
    holdings = holdings_of(project)
    uses = (
        last_unmasks({pk for h in holdings for pk in h.exemption_ids}, since) if settings.unused_days else {}
    )
    reviewers = reviewers_of(project)
    try:
        with transaction.atomic():
            campaign = AccessReviewCampaign.objects.create(
                project=project,
                opened_at=now,
                opened_by=actor.name,
                deadline=now + timedelta(days=settings.answer_days),
                on_deadline=settings.on_deadline,
                unused_days=settings.unused_days,
            )
            items = _create_items(campaign, holdings, reviewers, uses, since)
            if settings.pk is not None:
                AccessReviewSettings.objects.filter(pk=settings.pk).update(
                    next_campaign_at=now + timedelta(days=settings.every_days)
                )
            record_event(
                action="access_review.campaign_opened",
                actor=actor,
                channel=channel,
                target=Target("access_review", str(campaign.pk), f"{campaign.ref} of {project.key}"),
                project=project.key,
                detail={
                    "campaign": campaign.ref,
                    "deadline": campaign.deadline,
                    "on_deadline": campaign.on_deadline,
                    "unused_days": campaign.unused_days,
                    "reviewers": [str(r) for r in reviewers],
                    "items": [_item_detail(item) for item in items],
                },
            )
            if not items:
                _close(campaign, now)
            _announce_on_commit(campaign.pk, {item.reviewer_id for item in items if item.reviewer_id})
    except IntegrityError as exc:  # the partial unique index: one open campaign per project
        open_ref = AccessReviewCampaign.objects.filter(project=project, state=CampaignState.OPEN).first()
        raise ReviewError("project", f"{open_ref.ref if open_ref else 'a campaign'} is still open") from exc
    return campaign


def _create_items(
    campaign: AccessReviewCampaign,
    holdings: list[Holding],
    reviewers: list[User],
    uses: dict[Any, datetime],
    since: datetime,
) -> list[AccessReviewItem]:
    """One item per holding, each given to the eligible reviewer with the fewest items so far (ties
    by username), never to a person whose own access it is."""
    load: Counter[int] = Counter()
    own: dict[str, set[int]] = {}
    items = []
    for holding in holdings:
        if holding.member_key not in own:
            own[holding.member_key] = people_whose_access(holding.member_key)
        eligible = [r for r in reviewers if r.pk not in own[holding.member_key]]
        reviewer = min(eligible, key=lambda r: (load[r.pk], r.username), default=None)
        if reviewer is not None:
            load[reviewer.pk] += 1
        last = last_unmask_of(holding, uses)
        proposed = (
            campaign.unused_days > 0
            and not holding.breakglass_only
            and last is None
            and holding.since_exists is not None
            and holding.since_exists <= since
        )
        items.append(
            AccessReviewItem(
                campaign=campaign,
                kind=holding.kind,
                exemption=holding.exemption,
                role=holding.role,
                member_key=holding.member_key,
                member_label=holding.member_label[:255],
                access_label=holding.access_label[:500],
                reviewer=reviewer,
                last_unmask_at=last,
                usage_tracked=not holding.breakglass_only,
                proposed_removal=proposed,
            )
        )
    return AccessReviewItem.objects.bulk_create(items)


def campaigns_open_due() -> list[int]:
    """Open a campaign for every enabled project whose next one is due and that has none open.
    Each in its own transaction; a project another sweep is opening right now is skipped."""
    opened = []
    due = AccessReviewSettings.objects.filter(enabled=True, next_campaign_at__lte=timezone.now())
    for settings_id in due.values_list("pk", flat=True):
        with transaction.atomic():
            settings = (
                AccessReviewSettings.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("project")
                .filter(pk=settings_id, enabled=True, next_campaign_at__lte=timezone.now())
                .first()
            )
            if settings is None:
                continue
            if AccessReviewCampaign.objects.filter(
                project=settings.project, state=CampaignState.OPEN
            ).exists():
                continue  # the open one must end first; it opens at the next sweep after that
            opened.append(campaign_open(project=settings.project, actor=SYSTEM, channel=Channel.SYSTEM).pk)
    return opened


# --- answering ---------------------------------------------------------------------------------


def review_item_answer(*, item_id: int, user: User, decision: str, note: str = "", channel: str) -> Answer:
    """Keep or remove one item's access, as `user`. Idempotent for the person who answered: the same
    answer again changes nothing (`Answer.repeated`). Raises `NotYourItem` (recorded first) when
    the item is not theirs to answer, `AlreadyAnswered` when it was answered otherwise, and
    `ReviewError` for a bad decision or note."""
    if decision not in (KEEP, REMOVE):
        raise ReviewError("decision", "must be keep or remove")
    note = note.strip()
    if len(note) > NOTE_LIMIT:
        raise ReviewError("note", f"must be at most {NOTE_LIMIT} characters")
    try:
        return _answer(item_id, user, decision, note, channel)
    except NotYourItem as refusal:
        answer_refused_record(
            item_id=item_id, user=user, decision=decision, channel=channel, reason=str(refusal)
        )
        raise


@transaction.atomic
def _answer(item_id: int, user: User, decision: str, note: str, channel: str) -> Answer:
    item = AccessReviewItem.objects.select_related("campaign").get(pk=item_id)
    actor = actor_for(user)
    message = f"Access review {item.campaign.ref}: {item.member_label} removed from {item.access_label}"
    removing = decision == REMOVE and item.is_open
    with (
        policy_change(actor=actor, channel=channel, message=message[:500])
        if removing
        else contextlib.nullcontext()
    ):
        campaign = (
            AccessReviewCampaign.objects.select_for_update(of=("self",))
            .select_related("project")
            .get(pk=item.campaign_id)
        )
        item = (
            AccessReviewItem.objects.select_for_update(of=("self",))
            .select_related("reviewer")
            .get(pk=item_id)
        )
        item.campaign = campaign
        if not item.is_open:
            answered = ItemState.KEPT if decision == KEEP else ItemState.REMOVED
            if item.state == answered and item.decided_by_id == user.pk:
                return Answer(item, repeated=True)
            if item.reviewer_id != user.pk and not oversees(user, campaign.project):
                raise NotYourItem("This item is not yours to answer.")
            by = item.decided_by_name or "someone"
            raise AlreadyAnswered(
                f"{campaign.ref}: {item.member_label} was already {item.get_state_display().lower()} by {by}."
            )
        if refusal := answer_refusal(item, user):
            raise NotYourItem(refusal)
        was = item.state
        if decision == REMOVE:
            gone = not _remove_access(item, actor, channel)
        _decide(item, ItemState.KEPT if decision == KEEP else ItemState.REMOVED, user, channel, note)
        detail = {**_item_detail(item), "note": note, "escalated": was == ItemState.ESCALATED}
        if decision == REMOVE:
            detail["already_gone"] = gone
        record_event(
            action=f"access_review.item_{item.state}",
            actor=actor,
            channel=channel,
            target=_item_target(item),
            project=campaign.project.key,
            detail=detail,
        )
        closed = _close_if_done(campaign)
        told = _reviewer_ids(campaign) if closed else ({item.reviewer_id} if item.reviewer_id else set())
        _announce_on_commit(campaign.pk, told, escalation=was == ItemState.ESCALATED)
    return Answer(item, repeated=False)


def _policy_change_if(
    removing: bool, *, actor: Actor, channel: str, message: str
) -> contextlib.AbstractContextManager[Any]:
    """`policy_change` when access may be removed (it takes the policy head first); otherwise
    nothing: keeping access changes no policy, and need not queue behind policy writes."""
    if removing:
        return policy_change(actor=actor, channel=channel, message=message[:500])
    return contextlib.nullcontext()


@transaction.atomic
def answer_refused_record(
    *, item_id: int, user: User | None, decision: str, channel: str, reason: str, slack_user_id: str = ""
) -> None:
    """Someone tried to answer an item that is not theirs (or a Slack account Veil cannot tell):
    nothing changed; the attempt is kept for the denied-attempts report."""
    item = AccessReviewItem.objects.select_related("campaign__project").get(pk=item_id)
    detail: dict[str, Any] = {
        "campaign": item.campaign.ref,
        "item": item.pk,
        "decision": decision,
        "reason": reason,
    }
    if slack_user_id:
        detail["slack_user_id"] = slack_user_id
    record_event(
        action="access_review.answer_refused",
        actor=actor_for(user),
        channel=channel,
        target=Target(
            "access_review_item", str(item.pk), f"{item.member_label} via {item.access_label}"[:500]
        ),
        project=item.campaign.project.key,
        detail=detail,
    )


def _decide(item: AccessReviewItem, state: str, user: User | None, channel: str, note: str) -> None:
    item.state = state
    item.decided_by = user
    item.decided_by_name = str(user) if user is not None else f"{SYSTEM.name} ({DEADLINE_NOTE.lower()})"
    item.decided_at = timezone.now()
    item.decided_channel = channel
    item.note = note
    item.save(
        update_fields=["state", "decided_by", "decided_by_name", "decided_at", "decided_channel", "note"]
    )


def _remove_access(item: AccessReviewItem, actor: Actor, channel: str) -> bool:
    """Take the item's member out of its exemption or role, through masking's services. False when
    there was nothing left to remove (the exemption ended, the member was taken out meanwhile).
    Call inside `policy_change`."""
    kind, _, pk = item.member_key.partition(":")
    if item.kind == ItemKind.EXEMPTION_MEMBER:
        live = Exemption.objects.filter(revoked_at__isnull=True)
        exemption = live.filter(pk=item.exemption_id).first() if item.exemption_id is not None else None
        if exemption is None or (exemption.expires_at is not None and exemption.expires_at <= timezone.now()):
            return False
        users, groups = list(exemption.users.all()), list(exemption.groups.all())
        roles, accounts = list(exemption.roles.all()), list(exemption.service_accounts.all())
        named: dict[str, list[Any]] = {
            "user": users,
            "group": groups,
            "role": roles,
            "service_account": accounts,
        }
        if not _drop(named.get(kind, []), pk):
            return False
        if not (users or groups or roles or accounts):
            exemption_revoke(exemption=exemption, actor=actor, channel=channel)
            return True
        exemption_update(
            exemption=exemption,
            reason=exemption.reason,
            condition=exemption.condition,
            users=users,
            groups=groups,
            roles=roles,
            service_accounts=accounts,
            expires_at=exemption.expires_at,
            actor=actor,
            channel=channel,
        )
        return True
    role = Role.objects.filter(pk=item.role_id).first() if item.role_id is not None else None
    if role is None:
        return False
    users, groups, accounts = (
        list(role.users.all()),
        list(role.groups.all()),
        list(role.service_accounts.all()),
    )
    members: dict[str, list[Any]] = {"user": users, "group": groups, "service_account": accounts}
    if not _drop(members.get(kind, []), pk):
        return False
    role_save(
        name=role.name,
        description=role.description,
        users=users,
        groups=groups,
        service_accounts=accounts,
        actor=actor,
        channel=channel,
    )
    return True


def _drop(members: list[Any], pk: str) -> bool:
    """Remove the member whose primary key is `pk` from the list; False when it is not there."""
    for member in members:
        if str(member.pk) == pk:
            members.remove(member)
            return True
    return False


# --- the deadline ------------------------------------------------------------------------------


def campaigns_past_deadline() -> list[int]:
    """Apply every open campaign's deadline that has passed; returns their ids."""
    due = AccessReviewCampaign.objects.filter(state=CampaignState.OPEN, deadline__lte=timezone.now())
    passed = []
    for campaign_id in due.values_list("pk", flat=True):
        if campaign_deadline_pass(campaign_id=campaign_id):
            passed.append(campaign_id)
    return passed


@transaction.atomic
def campaign_deadline_pass(*, campaign_id: int) -> bool:
    """What nobody answered by the deadline follows the campaign's choice: removed (one policy
    version for them all, one `access_review.item_removed` each, by Veil), or escalated to the
    project's policy administrators (one `access_review.items_escalated`, and the escalation
    channel told on commit). Idempotent: False when the deadline was already applied or is not
    reached."""
    campaign = AccessReviewCampaign.objects.select_related("project").get(pk=campaign_id)
    removing = campaign.on_deadline == OnDeadline.REMOVE
    message = f"Access review {campaign.ref}: unanswered access removed at the deadline"
    with (
        policy_change(actor=SYSTEM, channel=Channel.SYSTEM, message=message)
        if removing
        else contextlib.nullcontext()
    ):
        campaign = (
            AccessReviewCampaign.objects.select_for_update(of=("self",))
            .select_related("project")
            .get(pk=campaign_id)
        )
        now = timezone.now()
        if campaign.state != CampaignState.OPEN or campaign.deadline > now:
            return False
        pending = list(
            AccessReviewItem.objects.select_for_update().filter(campaign=campaign, state=ItemState.PENDING)
        )
        campaign.deadline_passed_at = now
        if removing:
            _remove_unanswered(campaign, pending)
        elif pending:
            _escalate_unanswered(campaign, pending)
        campaign.save(update_fields=["deadline_passed_at", "state"])
        _close_if_done(campaign)
        _announce_on_commit(campaign.pk, _reviewer_ids(campaign), escalation=not removing and bool(pending))
    return True


def _remove_unanswered(campaign: AccessReviewCampaign, pending: list[AccessReviewItem]) -> None:
    for item in pending:
        gone = not _remove_access(item, SYSTEM, Channel.SYSTEM)
        _decide(item, ItemState.REMOVED, None, Channel.SYSTEM, DEADLINE_NOTE)
        record_event(
            action="access_review.item_removed",
            actor=SYSTEM,
            channel=Channel.SYSTEM,
            target=_item_target(item),
            project=campaign.project.key,
            detail={**_item_detail(item), "note": DEADLINE_NOTE, "already_gone": gone, "deadline": True},
        )


def _escalate_unanswered(campaign: AccessReviewCampaign, pending: list[AccessReviewItem]) -> None:
    AccessReviewItem.objects.filter(pk__in=[item.pk for item in pending]).update(state=ItemState.ESCALATED)
    campaign.state = CampaignState.ESCALATED
    record_event(
        action="access_review.items_escalated",
        actor=SYSTEM,
        channel=Channel.SYSTEM,
        target=_campaign_target(campaign),
        project=campaign.project.key,
        detail={"campaign": campaign.ref, "items": [item.pk for item in pending], "reason": DEADLINE_NOTE},
    )


def _close_if_done(campaign: AccessReviewCampaign) -> bool:
    """Close the campaign once no item waits for an answer; True when it closed now. Call holding
    the campaign's lock."""
    if (
        campaign.state == CampaignState.CLOSED
        or campaign.items.filter(state__in=[ItemState.PENDING, ItemState.ESCALATED]).exists()
    ):
        return False
    _close(campaign, timezone.now())
    return True


def _reviewer_ids(campaign: AccessReviewCampaign) -> set[int]:
    return set(campaign.items.filter(reviewer__isnull=False).values_list("reviewer_id", flat=True))


def _close(campaign: AccessReviewCampaign, now: datetime) -> None:
    campaign.state, campaign.closed_at = CampaignState.CLOSED, now
    campaign.save(update_fields=["state", "closed_at"])
    counts = Counter(campaign.items.values_list("state", flat=True))
    record_event(
        action="access_review.campaign_closed",
        actor=SYSTEM,
        channel=Channel.SYSTEM,
        target=_campaign_target(campaign),
        project=campaign.project.key,
        detail={
            "campaign": campaign.ref,
            "kept": counts[ItemState.KEPT],
            "removed": counts[ItemState.REMOVED],
        },
    )


def _item_target(item: AccessReviewItem) -> Target:
    return Target("access_review_item", str(item.pk), f"{item.member_label} via {item.access_label}"[:500])


def _campaign_target(campaign: AccessReviewCampaign) -> Target:
    return Target("access_review", str(campaign.pk), f"{campaign.ref} of {campaign.project.key}")


def _item_detail(item: AccessReviewItem) -> dict[str, Any]:
    """What the audit log keeps of an item: enough to rebuild the campaign's outcome from it alone."""
    return {
        "campaign": item.campaign.ref,
        "item": item.pk,
        "kind": item.kind,
        "member": item.member_label,
        "member_key": item.member_key,
        "access": item.access_label,
        "exemption": item.exemption_id,
        "role": item.role.name if item.role is not None else None,
        "reviewer": str(item.reviewer) if item.reviewer is not None else "",
        "last_unmask": item.last_unmask_at,
        "proposed_removal": item.proposed_removal,
    }


def _announce_on_commit(campaign_id: int, reviewer_ids: set[int], *, escalation: bool = False) -> None:
    """Bring the reviewers' Slack DMs (and the escalation post) in line once this commits. The
    periodic sync catches up on anything lost on the way."""
    ids = sorted(reviewer_ids)
    transaction.on_commit(lambda: _announce(campaign_id, ids, escalation=escalation))


def _announce(campaign_id: int, reviewer_ids: list[int], *, escalation: bool) -> None:
    """Hand each reviewer's DM (and the escalation post) to the workers, by task name: the tasks
    module imports this one. A broker outage loses nothing: the periodic sync does it."""
    if not settings.SLACK_ENABLED:
        return
    targets: list[int | None] = [*reviewer_ids, *([None] if escalation else [])]
    for reviewer_id in targets:
        try:
            current_app.send_task(SYNC_MESSAGE_TASK, (campaign_id, reviewer_id), retry=False)
        except Exception:
            logger.warning("broker unavailable; the Slack messages of access review %s wait", campaign_id)
            return
