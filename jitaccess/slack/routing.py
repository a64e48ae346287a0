"""Which Slack outbox rows an announcement makes. Called by `jitaccess.services.notify` inside the
transaction of the change, so it only reads the database: names are resolved when delivering.

| kind | rows |
|---|---|
| approval_needed | the approval channel; a DM per approver when the project says so or no channel is set |
| state_changed | one per change, whose delivery updates every stored message of the request |
| reminder | one per posted message, answered in its thread |
| escalation | the escalation channel |
| anything else | a DM per recipient (the requester's notices, break-glass alerts) |
"""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings

from identity.models import User
from jitaccess.models import (
    AccessRequest,
    Notification,
    NotificationChannel,
    NotificationKind,
    SlackMessage,
    SlackRoute,
)

Row = tuple[str, User | None, str]
SLACK = NotificationChannel.SLACK


def slack_destinations(request: AccessRequest, kind: str, recipients: Sequence[User]) -> list[Row]:
    """(channel, recipient, destination) rows in the shape `notify` writes; a DM row has the
    recipient and no destination (the Slack user is looked up when it is sent)."""
    if kind == NotificationKind.APPROVAL_NEEDED:
        channel = approval_channel(request)
        route = _route(request)
        rows: list[Row] = [(SLACK, None, channel)] if channel else []
        if not channel or (route is not None and route.dm_approvers):
            rows += [(SLACK, user, "") for user in recipients]
        return rows
    if kind == NotificationKind.STATE_CHANGED:
        announced = Notification.objects.filter(
            request=request,
            channel=SLACK,
            kind__in=[NotificationKind.APPROVAL_NEEDED, NotificationKind.ESCALATION],
        ).exists()
        return [(SLACK, None, "")] if announced else []
    if kind == NotificationKind.REMINDER:
        posted = SlackMessage.objects.filter(request=request).exclude(ts="")
        return [(SLACK, None, destination) for destination in posted.values_list("destination", flat=True)]
    if kind == NotificationKind.ESCALATION:
        channel = escalation_channel(request)
        return [(SLACK, None, channel)] if channel else []
    return [(SLACK, user, "") for user in recipients]


def approval_channel(request: AccessRequest) -> str:
    """The policy's channel, else the project's, else the installation's default ("" for none)."""
    route = _route(request)
    return (
        (request.policy.slack_channel if request.policy else "")
        or (route.channel if route else "")
        or settings.SLACK_APPROVAL_CHANNEL
    )


def escalation_channel(request: AccessRequest) -> str:
    route = _route(request)
    return (route.escalation_channel if route else "") or settings.SLACK_ESCALATION_CHANNEL


def _route(request: AccessRequest) -> SlackRoute | None:
    return SlackRoute.objects.filter(project_id=request.project_id).first()
