"""Celery tasks for Slack: interfaces only. Loaded through CELERY_IMPORTS; scheduled in settings."""

from __future__ import annotations

from celery import shared_task

from jitaccess.slack.delivery import resume_after_outage
from jitaccess.slack.services import reminders_announce


@shared_task(ignore_result=True)
def remind_pending_requests() -> dict[str, int]:
    """Every minute: remind and escalate pending requests (idempotent: outbox dedupe keys)."""
    nudges = reminders_announce()
    return {"reminders": nudges.reminders, "escalations": nudges.escalations}


@shared_task(ignore_result=True)
def resume_slack_deliveries() -> int:
    """Every minute: after an outage of any length, send what Slack could not take (idempotent)."""
    return resume_after_outage()
