"""With a real Celery worker running the beat schedule: the sweep opens a due access review once,
and applies its deadline once, whatever extra sweeps run beside it."""

from __future__ import annotations

import pytest
from django.utils import timezone

from audit.models import AuditEvent, Channel
from jitaccess.reviews.models import AccessReviewCampaign, CampaignState
from jitaccess.reviews.services import review_settings_save
from tests.jitaccess.reviews import make_reviewed
from tests.jitaccess.workers import (
    celery_worker,
    finished,
    free_port,
    private_redis,
    publishing_to,
    wait_until,
    worker_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_beat_opens_a_due_review_once_and_applies_its_deadline_once(world, tmp_path):
    reviewed = make_reviewed(world)
    review_settings_save(
        project=world.project,
        enabled=True,
        every_days=91,
        answer_days=14,
        on_deadline="remove",
        unused_days=90,
        next_campaign_at=timezone.now(),
        changed_by=world.dave,
        channel=Channel.WEB,
    )
    with (
        private_redis(free_port()) as broker,
        publishing_to(broker),
        celery_worker(worker_env(broker, VEIL_VAR_DIR=str(tmp_path))),
    ):
        wait_until(AccessReviewCampaign.objects.exists, timeout=30, what="the beat to open the review")
        from jitaccess.reviews.tasks import sweep_access_reviews

        duplicates = [sweep_access_reviews.delay().id, sweep_access_reviews.delay().id]
        wait_until(lambda: finished(broker, duplicates), timeout=30, what="both extra sweeps to run")
        AccessReviewCampaign.objects.update(deadline=timezone.now())
        wait_until(
            lambda: AccessReviewCampaign.objects.get().state == CampaignState.CLOSED,
            timeout=30,
            what="the beat to apply the deadline",
        )

    assert AuditEvent.objects.filter(action="access_review.campaign_opened").count() == 1
    assert AuditEvent.objects.filter(action="access_review.item_removed").count() == 4
    reviewed.exemption.refresh_from_db()
    assert reviewed.exemption.revoked_at is not None, "its last member removed, the exemption ends"
    assert list(reviewed.readers.users.all()) == []
