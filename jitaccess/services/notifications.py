"""The outbox writer: every announcement of a request (to the web inbox, email and Slack) is a row
written in the transaction of the change it announces, then handed to the workers on commit."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import current_app
from django.conf import settings
from django.db import transaction

from identity.models import User
from jitaccess.models import AccessRequest, Notification, NotificationChannel, NotificationKind
from jitaccess.slack.routing import slack_destinations

logger = logging.getLogger(__name__)
# Named, not imported: `jitaccess.tasks` imports the services (the sweep), which enqueue from here.
DELIVER_TASK = "jitaccess.tasks.deliver_notification"


def notify(
    request: AccessRequest, kind: str, recipients: Iterable[User], *, emails: Iterable[str] = ()
) -> int:
    """Write the outbox rows for one announcement, in the caller's transaction, and hand them to
    Celery once it commits. Returns how many were new (a repeated announcement adds none)."""
    people = list(recipients)
    rows: list[tuple[str, User | None, str]] = []
    for user in people:
        rows.append((NotificationChannel.WEB, user, ""))
        if settings.NOTIFY_BY_EMAIL and user.email:
            rows.append((NotificationChannel.EMAIL, user, user.email))
    rows.extend((NotificationChannel.EMAIL, None, address) for address in emails)
    if settings.SLACK_ENABLED:
        rows.extend(slack_destinations(request, kind, people))
    if kind == NotificationKind.EXPIRING and request.expires_at:
        suffix = f":{int(request.expires_at.timestamp())}"
    elif kind == NotificationKind.STATE_CHANGED:
        # Once per visible change: the new state, and within `pending` each added approval.
        suffix = f":{request.state}:{request.approvals.count()}"
    elif kind == NotificationKind.APPROVAL_NEEDED and request.stage > 1:
        # Each stage asks its own approvers, someone in two stages' roles once per stage.
        suffix = f":stage{request.stage}"
    else:
        suffix = ""
    created_ids = []
    for channel, recipient, destination in rows:
        who = f"user{recipient.pk}" if recipient else destination
        notification, created = Notification.objects.get_or_create(
            dedupe_key=f"{request.pk}:{kind}{suffix}:{channel}:{who}",
            defaults={
                "request": request,
                "kind": kind,
                "channel": channel,
                "recipient": recipient,
                "destination": destination,
                "stage": request.stage,
            },
        )
        if created:
            created_ids.append(notification.pk)
    if created_ids:
        transaction.on_commit(lambda: enqueue_deliveries(created_ids), robust=True)
    return len(created_ids)


def enqueue_deliveries(notification_ids: list[int]) -> None:
    """Hand fresh notifications to the workers. If the broker is down they stay pending in the
    outbox and `deliver_pending_notifications` sends them later: nothing is lost."""
    for notification_id in notification_ids:
        try:
            current_app.send_task(DELIVER_TASK, (notification_id,), retry=False)
        except Exception:
            logger.warning("broker unavailable; notification %s stays in the outbox", notification_id)
            return
