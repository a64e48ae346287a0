"""Delivering outbox notifications: claim, send, mark — at most one sender per notification.

A notification is claimed with a conditional UPDATE (pending and not claimed, or its claim lapsed),
so a task delivered twice, or the periodic retry sweep racing the first task, sends it once. A
failed send backs off exponentially (`next_attempt_at`); the sweep retries it, so no task ever
waits on a long countdown in the broker.

After `MAX_ATTEMPTS` (about an hour and a half of back-off) a row stops retrying and is marked
failed, never silently: the give-up is logged at ERROR, operators see the count on their home
page and the rows in the admin, and `retry_failed` (the admin's "Retry delivery" action,
`manage.py notifications retry`) puts them back in the outbox once the channel is fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from jitaccess.formatting import directory_ending
from jitaccess.models import DeliveryState, Notification, NotificationChannel, NotificationKind
from jitaccess.outbox import CLAIM, DeliveryFailed, NotSent
from jitaccess.selectors.requests import end_reason, ended_by_directory
from jitaccess.slack import delivery as slack_delivery

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 10


def deliver(notification_id: int) -> bool:
    """Send one notification if it is still pending and nobody else holds it. True when sent."""
    now = timezone.now()
    claimed = (
        _due(now).filter(pk=notification_id).update(next_attempt_at=now + CLAIM, attempts=F("attempts") + 1)
    )
    if not claimed:
        return False
    notification = Notification.objects.select_related(
        "request__requester", "request__project", "recipient"
    ).get(pk=notification_id)
    try:
        _send(notification)
    except NotSent as skipped:
        Notification.objects.filter(pk=notification_id).update(
            state=DeliveryState.SKIPPED, next_attempt_at=None, last_error=str(skipped)[:500]
        )
        logger.info("notification %s not sent: %s", notification_id, skipped)
        return False
    except Exception as exc:  # any channel failure: back off and let the sweep retry
        gave_up = notification.attempts >= MAX_ATTEMPTS
        Notification.objects.filter(pk=notification_id).update(
            state=DeliveryState.FAILED if gave_up else DeliveryState.PENDING,
            next_attempt_at=None
            if gave_up
            else now + timedelta(seconds=min(2**notification.attempts * 5, 3600)),
            last_error=f"{type(exc).__name__}: {exc}"[:500],
        )
        if gave_up:
            logger.error(
                "notification %s (%s, %s to %s, %s) NOT DELIVERED: gave up after %s attempts: %s. "
                "Once the channel works, retry it: Django admin > Notifications > 'Retry delivery', "
                "or `manage.py notifications retry`.",
                notification_id,
                notification.get_kind_display(),
                notification.get_channel_display(),
                notification.recipient or notification.destination,
                notification.request.ref,
                notification.attempts,
                exc,
            )
        else:
            logger.warning(
                "notification %s not delivered (attempt %s of %s), will retry: %s",
                notification_id,
                notification.attempts,
                MAX_ATTEMPTS,
                exc,
            )
        return False
    Notification.objects.filter(pk=notification_id).update(
        state=DeliveryState.SENT, sent_at=timezone.now(), last_error=""
    )
    return True


def retry_failed(*, ids: Iterable[int] | None = None) -> list[int]:
    """Put notifications that gave up back in the outbox, with a fresh set of attempts: all of
    them, or those of `ids` (other ids, and rows not failed, are left alone). Returns the ids put
    back; the caller hands them to the workers (`services.notifications.enqueue_deliveries`), and
    the periodic sweep sends them anyway. Failed rows are never claimed, so resetting them races
    no sender."""
    failed = Notification.objects.filter(state=DeliveryState.FAILED)
    if ids is not None:
        failed = failed.filter(pk__in=list(ids))
    with transaction.atomic():
        retried = list(failed.select_for_update().order_by("created_at").values_list("pk", flat=True))
        Notification.objects.filter(pk__in=retried).update(
            state=DeliveryState.PENDING, attempts=0, next_attempt_at=None
        )
    if retried:
        logger.warning("%s undelivered notification(s) put back in the outbox: %s", len(retried), retried)
    return retried


def failed_counts() -> dict[str, int]:
    """How many notifications gave up, per channel label ("Email": 2); empty when none did."""
    rows = (
        Notification.objects.filter(state=DeliveryState.FAILED)
        .values_list("channel")
        .annotate(n=Count("pk"))
        .order_by("channel")
    )
    return {NotificationChannel(channel).label: n for channel, n in rows}


def due_notification_ids(limit: int = 500) -> list[int]:
    """Pending notifications nobody holds and whose back-off has passed (what the sweep retries)."""
    return list(_due(timezone.now()).order_by("created_at").values_list("pk", flat=True)[:limit])


def _due(now: datetime) -> QuerySet[Notification]:
    """Pending, and neither claimed by a sender nor backing off at `now`."""
    return Notification.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now), state=DeliveryState.PENDING
    )


def _send(notification: Notification) -> None:
    if notification.channel == NotificationChannel.WEB:
        return  # the web inbox reads the outbox itself; delivery only marks it sent
    if notification.channel == NotificationChannel.EMAIL:
        subject, body = message_text(notification)
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [notification.destination])
        return
    if notification.channel == NotificationChannel.SLACK:
        slack_delivery.send(notification)
        return
    raise DeliveryFailed(f"no sender for channel {notification.channel!r}")


def message_text(notification: Notification) -> tuple[str, str]:
    """Subject and plain-text body. Names, scope and reason only: never a column value."""
    request = notification.request
    link = f"{settings.SITE_URL}/requests/{request.pk}/"
    when = f" until {request.expires_at:%Y-%m-%d %H:%M %Z}" if request.expires_at else ""
    lines = {
        NotificationKind.APPROVAL_NEEDED: (
            f"{request.requester} asks for more time on {request.scope_label} ({request.extends.ref})"
            if request.extends
            else f"{request.requester} asks to unmask {request.scope_label}"
        ),
        NotificationKind.APPROVED: f"Your request to unmask {request.scope_label} was approved{when}",
        NotificationKind.DENIED: f"Your request for {request.scope_label} was denied: {request.deny_reason}",
        NotificationKind.EXPIRING: f"Your access to {request.scope_label} expires{when}; extend it if needed",
        NotificationKind.EXPIRED: f"Your access to {request.scope_label} has expired",
        NotificationKind.REVOKED: f"Your access to {request.scope_label} was revoked",
        NotificationKind.TIMED_OUT: f"Nobody decided on {request.scope_label} in time; the request closed",
        NotificationKind.BREAKGLASS: f"BREAK-GLASS: {request.requester} took access to {request.scope_label}",
    }
    headline = lines[NotificationKind(notification.kind)]
    ended = ""
    if notification.kind == NotificationKind.REVOKED:
        why = end_reason(request)
        who = request.ended_by or "an administrator"
        ended = f"Revoked by {who}, who wrote: {why}\n" if why else f"Revoked by {who}.\n"
    if ended_by_directory(request):  # sent after the directory ended the request: it says so
        ended = f"Ended: {directory_ending(request.requester)}.\n"
    body = f"{headline}\n\n{ended}Reason: {request.reason}\nRequest: {request.ref}\n{link}\n"
    return f"[Veil] {headline}"[:200], body
