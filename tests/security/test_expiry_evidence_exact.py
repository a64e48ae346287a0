"""Finding 10: when a grant expires while no worker runs, everything a person or an auditor reads
says access ended at the grant's `expires_at`, not at the moment the sweep got round to it; the
sweep's moment is kept apart, as "expiry processed"."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from audit.filters import EVERYTHING, AuditFilter
from audit.models import AuditEvent, Channel
from audit.reports import REPORTS
from jitaccess.services.grants import requests_sweep
from jitaccess.services.requests import request_approve
from jitaccess.slack.blocks import status_text
from jitaccess.slack.selectors import card_for
from jitaccess.states import State
from shared import dates
from tests.jitaccess.conftest import world  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db
OUTAGE = timedelta(seconds=41)


@pytest.fixture
def expired_late(world):  # noqa: F811 - the imported fixture
    request = world.request("email")
    request_approve(request_id=request.pk, approver=world.bob, channel=Channel.WEB)
    request.refresh_from_db()
    with time_machine.travel(request.expires_at + OUTAGE, tick=False):
        requests_sweep()
    request.refresh_from_db()
    return request


def test_the_request_records_the_real_end_and_the_sweep_apart(expired_late):
    assert expired_late.state == State.EXPIRED
    assert expired_late.ended_at == expired_late.expires_at
    assert expired_late.expiry_processed_at == expired_late.expires_at + OUTAGE


def test_the_slack_message_says_when_access_ended_to_the_second(expired_late):
    text = status_text(card_for(expired_late.pk))

    assert f"Expired <!date^{int(expired_late.expires_at.timestamp())}^" in text
    assert "{time_secs}" in text


def test_the_request_page_shows_the_end_and_when_the_expiry_was_processed(expired_late, world, client):  # noqa: F811
    client.force_login(world.alice)
    html = client.get(reverse("jitaccess:request-detail", args=[expired_late.pk])).content.decode()

    def shown(moment):
        return dates.timestamp(moment, "seconds")

    assert f"<dt>Ended</dt><dd>{shown(expired_late.expires_at)}" in html
    assert f"<dt>Expiry processed</dt><dd>{shown(expired_late.expiry_processed_at)}" in html


def test_the_audit_event_and_the_reports_carry_the_real_end(expired_late):
    event = AuditEvent.objects.get(action="grant.expired")
    ended = parse_datetime(event.detail["ended_at"])
    processed = parse_datetime(event.detail["processed_at"])
    assert abs(ended - expired_late.expires_at) < timedelta(milliseconds=1)
    assert abs(processed - (expired_late.expires_at + OUTAGE)) < timedelta(milliseconds=1)

    # Between the real end and the late sweep, the grant is not in force.
    moment = expired_late.expires_at + OUTAGE / 2
    rows = list(REPORTS["in_force"].rows(AuditFilter(at=moment), EVERYTHING))
    assert [row for row in rows if row[0] == "grant"] == []
    events = REPORTS["events"]
    exported = [dict(zip(events.columns, row, strict=True)) for row in events.rows(AuditFilter(), EVERYTHING)]
    (expiry,) = [row for row in exported if row["action"] == "grant.expired"]
    assert "ended_at" in str(expiry["detail"])
