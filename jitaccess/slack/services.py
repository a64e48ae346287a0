"""Writes for Slack: identity links, project routes, reminders, and the audit of refused clicks and
forged requests. Each change writes its audit event in the same transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.failures import failure_count
from audit.models import Channel
from audit.services import Actor, Target, record_event
from identity.models import User
from identity.services import actor_for
from jitaccess.models import (
    AccessRequest,
    NotificationKind,
    SlackLinkMethod,
    SlackRoute,
    SlackUserLink,
)
from jitaccess.services.notifications import notify  # a reminder is an announcement like any other
from jitaccess.states import State
from masking.models import PolicyChange, Project

logger = logging.getLogger(__name__)


@transaction.atomic
def slack_user_link(
    *, slack_user_id: str, user: User, method: str, email: str = "", actor: Actor, channel: str
) -> SlackUserLink | None:
    """Let a Slack account act as `user`. An email match never takes a Slack account from another
    user whose link still holds; an administrator's link replaces any. Returns the link, or None
    when refused.

    Locking contract: the link row is read FOR UPDATE, so concurrent linkers of one Slack account
    serialise and the audit log shows every change once."""
    existing = (
        SlackUserLink.objects.select_for_update()
        .select_related("user")
        .filter(slack_user_id=slack_user_id)
        .first()
    )
    if existing is not None:
        if (existing.user_id, existing.verified_via, existing.email) == (user.pk, method, email):
            return existing
        if method == SlackLinkMethod.EMAIL and existing.user_id != user.pk and existing.is_valid:
            logger.warning("Slack user %s stays linked to %s, not %s", slack_user_id, existing.user, user)
            return None
    replaced = existing.user.canonical_subject if existing is not None else None
    link, _ = SlackUserLink.objects.update_or_create(
        slack_user_id=slack_user_id, defaults={"user": user, "verified_via": method, "email": email}
    )
    record_event(
        action="slack.user_linked",
        actor=actor,
        channel=channel,
        target=Target("user", str(user.pk), str(user)),
        detail={"slack_user_id": slack_user_id, "method": method, "email": email, "replaced": replaced},
    )
    return link


@transaction.atomic
def slack_user_unlink(*, slack_user_id: str, actor: Actor, channel: str) -> bool:
    link = (
        SlackUserLink.objects.select_for_update()
        .select_related("user")
        .filter(slack_user_id=slack_user_id)
        .first()
    )
    if link is None:
        return False
    link.delete()
    record_event(
        action="slack.user_unlinked",
        actor=actor,
        channel=channel,
        target=Target("user", str(link.user.pk), str(link.user)),
        detail={"slack_user_id": slack_user_id},
    )
    return True


@transaction.atomic
def slack_route_set(
    *,
    project: Project,
    slack_channel: str,
    dm_approvers: bool,
    escalation_channel: str,
    actor: Actor,
    channel: str,
) -> SlackRoute:
    """Where the project's requests are announced. Recorded like any other policy change."""
    route, _ = SlackRoute.objects.update_or_create(
        project=project,
        defaults={
            "channel": slack_channel.strip(),
            "dm_approvers": dm_approvers,
            "escalation_channel": escalation_channel.strip(),
        },
    )
    record_event(
        action="slack.route_changed",
        actor=actor,
        channel=channel,
        target=Target("project", project.key, str(project)),
        project=project.key,
        detail={
            "channel": route.channel,
            "dm_approvers": route.dm_approvers,
            "escalation_channel": route.escalation_channel,
        },
    )
    return route


def forged_request_record(*, reason: str, remote_addr: str) -> None:
    """A request to the interactivity endpoint that Slack did not sign (or signed too long ago), or
    that comes from another workspace or app. Counted, and chained once per window
    (`audit.failures`): anyone can send these, as fast as they like."""
    failure_count(action="slack.forged_request", channel=Channel.SLACK, source=remote_addr, reason=reason)


def click_refused_record(
    *, request: AccessRequest, user: User | None, slack_user_id: str, action: str, reason: str
) -> None:
    """Someone who may not decide the request clicked anyway (unlinked, not an approver, the
    requester). Nothing changed; the attempt is kept for the denied-attempts report."""
    target = Target("request", str(request.pk), f"{request.ref} {request.scope_label}")
    _click_refused(target, request.project.key, user, slack_user_id, action, reason)


def policy_click_refused_record(
    *, change: PolicyChange, user: User | None, slack_user_id: str, action: str, reason: str
) -> None:
    """The same for a policy change's buttons (unlinked, its author, no right to decide it)."""
    target = Target("policy_change", str(change.pk), change.message[:200])
    _click_refused(target, "", user, slack_user_id, action, reason)


def _click_refused(
    target: Target, project: str, user: User | None, slack_user_id: str, action: str, reason: str
) -> None:
    record_event(
        action="slack.action.refused",
        actor=actor_for(user),
        channel=Channel.SLACK,
        target=target,
        project=project,
        detail={"slack_user_id": slack_user_id, "action": action, "reason": reason},
    )


@dataclass
class Nudges:
    reminders: int = 0
    escalations: int = 0


def reminders_announce(*, now: datetime | None = None) -> Nudges:
    """Re-announce requests pending for `SLACK_REMINDER_AFTER_S` (a reply in each message's thread)
    and escalate those pending for `SLACK_ESCALATION_AFTER_S` (a message in the escalation channel).

    Idempotent: the outbox's dedupe keys hold one reminder per (request, message) and one
    escalation per request, so running this every minute, or twice at once, announces each once.
    A message posted late (Slack was down) gets its reminder on a later run."""
    result = Nudges()
    if not settings.SLACK_ENABLED:
        return result
    now = now or timezone.now()
    pending = AccessRequest.objects.filter(state=State.PENDING, pending_until__gt=now).select_related(
        "project"
    )
    if settings.SLACK_REMINDER_AFTER_S:
        due = pending.filter(created_at__lte=now - timedelta(seconds=settings.SLACK_REMINDER_AFTER_S))
        for request in due.filter(slack_messages__ts__gt="").distinct():
            with transaction.atomic():
                result.reminders += notify(request, NotificationKind.REMINDER, [])
    if settings.SLACK_ESCALATION_AFTER_S:
        due = pending.filter(created_at__lte=now - timedelta(seconds=settings.SLACK_ESCALATION_AFTER_S))
        for request in due.exclude(notifications__kind=NotificationKind.ESCALATION):
            with transaction.atomic():
                result.escalations += notify(request, NotificationKind.ESCALATION, [])
    return result
