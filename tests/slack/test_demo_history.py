"""`demo_data` with Slack configured: the demo's history (a request approved, one denied) is not
announced in a real channel; only the request still waiting for Bob is."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from jitaccess.models import AccessRequest, DeliveryState, Notification, NotificationChannel
from jitaccess.states import State
from tests.slack.conftest import APPROVALS, SIGNING_SECRET, deliver_outbox
from tests.slack.fake_slack import TOKEN

pytestmark = pytest.mark.django_db


def test_demo_history_posts_nothing_to_slack(settings, fake_slack):
    settings.SLACK_BOT_TOKEN, settings.SLACK_ENABLED = TOKEN, True
    settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
    settings.SLACK_TEAM_ID, settings.SLACK_APP_ID = "T0ACME", "A0VEIL"
    settings.SLACK_API_URL, settings.SLACK_API_TIMEOUT_S = fake_slack.url, 1
    settings.SLACK_APPROVAL_CHANNEL = APPROVALS
    for person in ("alice", "bob", "carol", "dave", "erin", "admin"):
        fake_slack.users[f"{person}@example.com"] = f"U{person.upper()}"

    call_command("demo_data", allow_public_passwords=True)
    deliver_outbox()  # what the first worker does with the outbox

    pending = AccessRequest.objects.get(state=State.PENDING)
    history = AccessRequest.objects.exclude(pk=pending.pk)
    assert {r.state for r in history} >= {State.APPROVED, State.DENIED}
    posted = fake_slack.posts()
    assert posted and all(pending.ref in message.shown for message in posted), [m.shown for m in posted]
    assert not fake_slack.calls_to("chat.update"), "no message of the history posted, so none updated"
    slack_rows = Notification.objects.filter(request__in=history, channel=NotificationChannel.SLACK)
    assert slack_rows.exists() and not slack_rows.exclude(state=DeliveryState.SKIPPED).exists()
