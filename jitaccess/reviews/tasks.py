"""Celery tasks for access reviews: interfaces only. Loaded through CELERY_IMPORTS; scheduled in
settings (`CELERY_BEAT_SCHEDULE`)."""

from __future__ import annotations

from celery import shared_task

from jitaccess.reviews.services import campaigns_open_due, campaigns_past_deadline
from jitaccess.reviews.slack_messages import review_message_sync, review_messages_sweep


@shared_task(ignore_result=True)
def sweep_access_reviews() -> dict[str, int]:
    """Every minute: open the campaigns that are due, apply the deadlines that passed (idempotent:
    one open campaign per project, and a deadline is applied once under the campaign's lock)."""
    return {"opened": len(campaigns_open_due()), "deadlines": len(campaigns_past_deadline())}


@shared_task(ignore_result=True)
def sync_access_review_messages() -> int:
    """Every minute: post and update what a lost task or a Slack outage left behind (idempotent)."""
    return review_messages_sweep()


@shared_task(ignore_result=True)
def sync_access_review_message(campaign_id: int, reviewer_id: int | None) -> str:
    """Idempotency key: the `AccessReviewMessage` row, claimed before posting."""
    return review_message_sync(campaign_id, reviewer_id)
