"""Celery tasks: interfaces only (ids in, one service call). Schedules live in settings."""

from __future__ import annotations

import logging
from dataclasses import asdict

from celery import shared_task

from jitaccess import delivery
from jitaccess.services import requests_sweep

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def deliver_notification(notification_id: int) -> bool:
    """Idempotency key: the notification row (claimed by conditional update before sending)."""
    return delivery.deliver(notification_id)


@shared_task(ignore_result=True)
def deliver_pending_notifications() -> int:
    """Every minute: retry what failed or was never enqueued (broker down when it was written)."""
    due = delivery.due_notification_ids()
    for notification_id in due:
        delivery.deliver(notification_id)
    return len(due)


@shared_task(ignore_result=True)
def sweep_requests() -> dict[str, int]:
    """Every minute: expire grants, time out requests, send expiry notices (idempotent)."""
    return asdict(requests_sweep())


def enqueue_deliveries(notification_ids: list[int]) -> None:
    """Hand fresh notifications to the workers. If the broker is down they stay pending in the
    outbox and `deliver_pending_notifications` sends them later: nothing is lost."""
    for notification_id in notification_ids:
        try:
            deliver_notification.apply_async((notification_id,), retry=False)
        except Exception:
            logger.warning("broker unavailable; notification %s stays in the outbox", notification_id)
            return
