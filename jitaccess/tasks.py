"""Celery tasks: interfaces only (ids in, one service call). Schedules live in settings."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from jitaccess import delivery
from jitaccess.services.grants import requests_sweep


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
