"""Finding 7: unauthenticated callers could flood the permanent audit log (200 badly signed Slack
POSTs wrote 200 chained events, each taking the chain head lock; failed sign-ins the same). They
are now counted per window, action and source (audit.failures) and chained once per window."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.failures import failure_tallies_fold
from audit.models import AuditEvent, ChainHead, FailureTally
from audit.reports.denied import denied_q
from tests.factories import make_user

pytestmark = pytest.mark.django_db
FLOOD = 200


@pytest.fixture(autouse=True)
def _one_window(settings):
    """A window longer than any test run, so a test never straddles two."""
    settings.AUDIT_FAILURE_WINDOW_S = 10**9


def chain_length() -> int:
    head = ChainHead.objects.filter(id=1).first()
    return head.seq if head else 0


def fold_everything() -> list[AuditEvent]:
    return failure_tallies_fold(now=timezone.now() + timedelta(seconds=10**9))


@pytest.fixture
def slack_on(settings):
    settings.SLACK_BOT_TOKEN, settings.SLACK_ENABLED = "xoxb-test", True
    settings.SLACK_SIGNING_SECRET = "the-real-signing-secret"
    settings.SLACK_TEAM_ID, settings.SLACK_APP_ID = "T0ACME", "A0VEIL"


def test_a_flood_of_forged_slack_requests_writes_one_chained_event_that_compliance_sees(client, slack_on):
    before = chain_length()
    for n in range(FLOOD):
        response = client.post(
            "/slack/interactions",
            data=f"payload=%7B%22n%22%3A{n}%7D",
            content_type="application/x-www-form-urlencoded",
            headers={
                "X-Slack-Request-Timestamp": str(int(timezone.now().timestamp())),
                "X-Slack-Signature": "v0=00",
            },
            REMOTE_ADDR="203.0.113.50",
        )
        assert response.status_code == 401

    assert chain_length() == before, "no failure took the chain head lock"
    events = fold_everything()

    (event,) = events
    assert chain_length() - before == 1
    assert event.detail["count"] == FLOOD
    assert event.detail["sources"] == [
        {"address": "203.0.113.50", "username": "", "reason": "signature does not match", "count": FLOOD}
    ]
    assert AuditEvent.objects.filter(denied_q()).get() == event, "in the denied-attempts report"
    assert not FailureTally.objects.exists(), "folded rows are gone; folding again adds nothing"
    assert fold_everything() == []


def test_a_flood_of_failed_sign_ins_is_counted_not_chained(client):
    make_user("alice")
    before = chain_length()
    for _ in range(FLOOD):
        client.post("/login/", {"username": "alice", "password": "guess"}, REMOTE_ADDR="198.51.100.7")

    assert chain_length() == before
    events = fold_everything()

    assert chain_length() - before == len(events) == 2, "one event for the failures, one for the lockouts"
    failed = next(e for e in events if e.action == "auth.sign_in_failed")
    assert failed.detail["count"] == FLOOD
    assert [(r["address"], r["username"]) for r in failed.detail["sources"]] == [("198.51.100.7", "alice")]


def test_a_folded_event_lists_the_largest_sources_and_sums_the_rest(client, slack_on, monkeypatch):
    monkeypatch.setattr("audit.failures.MAX_ROWS_PER_EVENT", 2)
    for address, times in (("192.0.2.1", 3), ("192.0.2.2", 2), ("192.0.2.3", 1), ("192.0.2.4", 1)):
        for _ in range(times):
            client.post(
                "/slack/interactions",
                data="payload=%7B%7D",
                content_type="application/x-www-form-urlencoded",
                REMOTE_ADDR=address,
            )

    (event,) = fold_everything()

    assert [r["address"] for r in event.detail["sources"]] == ["192.0.2.1", "192.0.2.2"]
    assert event.detail["not_listed"] == {"rows": 2, "count": 2}
    assert event.detail["count"] == 7
