"""Celery tasks for Slack: interfaces only. Loaded through CELERY_IMPORTS; scheduled in settings."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from jitaccess.slack.delivery import resume_after_outage
from jitaccess.slack.interactions import apply_waiting_clicks
from jitaccess.slack.policy_messages import (
    policy_message_sync,
    policy_messages_sweep,
    policy_reminders_announce,
)
from jitaccess.slack.services import reminders_announce

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def remind_pending_requests() -> dict[str, int]:
    """Every minute: remind and escalate pending requests (idempotent: outbox dedupe keys)."""
    nudges = reminders_announce()
    return {"reminders": nudges.reminders, "escalations": nudges.escalations}


@shared_task(ignore_result=True)
def apply_slack_clicks() -> int:
    """Every minute: apply decisions clicked in Slack that their node acknowledged but did not
    apply (it died after Slack's 200). Idempotency key: the click's row, taken under its lock."""
    return apply_waiting_clicks()


@shared_task(ignore_result=True)
def resume_slack_deliveries() -> int:
    """Every minute: after an outage of any length, send what Slack could not take (idempotent)."""
    return resume_after_outage()


@shared_task(ignore_result=True)
def sync_policy_message(change_id: int) -> str:
    """After a policy change is filed or decided: post or update its Slack message (idempotent)."""
    return policy_message_sync(change_id)


@shared_task(ignore_result=True)
def sync_policy_messages() -> dict[str, int]:
    """Every minute: catch up on policy-change messages a lost task or an outage left behind, and
    remind approvers of changes left pending (idempotent)."""
    return {"synced": policy_messages_sweep(), "reminders": policy_reminders_announce()}


def enqueue_policy_message(change_id: int) -> None:
    """Registered in `masking.services.policy_changes.policy_change_listeners`; runs on commit.
    A broker outage loses nothing: the sweep posts or updates the message within a minute."""
    if not settings.SLACK_ENABLED:
        return
    try:
        sync_policy_message.apply_async((change_id,), retry=False)
    except Exception:
        logger.warning("broker unavailable; the Slack message of policy change #%s waits", change_id)
