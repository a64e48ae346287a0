"""What the messages say when what people typed or asked for is large or hostile: every message
still fits Block Kit's limits (the fake refuses what Slack refuses), says what it left out, and
lets no typed text mention anyone."""

from __future__ import annotations

import pytest

from audit.models import Channel
from audit.services import SYSTEM
from jitaccess.models import Notification, NotificationChannel, NotificationKind
from jitaccess.services.requests import request_approve, request_deny
from jitaccess.slack import blocks
from jitaccess.slack.selectors import card_for
from masking.services.catalog import catalog_upsert
from tests.factories import catalog_payload
from tests.slack.conftest import (
    APPROVALS,
    SLACK_IDS,
    click,
    deliver_outbox,
    deny_submission,
    post_interaction,
)
from tests.slack.fake_slack import block_kit_problem

pytestmark = pytest.mark.django_db


def dm(fake_slack, username):
    return fake_slack.in_channel("D" + SLACK_IDS[username][1:])


def unsent_slack_rows():
    return list(
        Notification.objects.filter(channel=NotificationChannel.SLACK, sent_at__isnull=True).values_list(
            "kind", "last_error"
        )
    )


def wide_table(count: int) -> list[str]:
    """Give public.customers `count` more classified columns with long (63-character) names."""
    names = [f"customer_{i:02d}_" + "x" * 50 for i in range(count)]
    columns = [{"name": "email", "data_type": "text", "classification_level": 3}]
    columns += [{"name": name, "data_type": "text", "classification_level": 2} for name in names]
    payload = catalog_payload(columns=columns)
    catalog_upsert(
        instance_spec=payload["instance"],
        databases=payload["databases"],
        prune=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    return names


def test_a_request_for_many_long_columns_is_posted_and_says_how_many_it_does_not_list(slack, fake_slack):
    names = wide_table(30)
    request = slack.request("email", *names)

    deliver_outbox()

    assert unsent_slack_rows() == []
    [message] = fake_slack.in_channel(APPROVALS)
    columns = next(b for b in message.blocks if b.get("text", {}).get("text", "").startswith("*Columns*"))
    assert columns["text"]["text"].endswith("…and 11 more: the full list is in Veil.")
    assert "31 columns" in message.text
    approve = next(b for b in message.blocks if b["type"] == "actions")["elements"][0]
    assert "of prod-pg/shop/public.customers (31 columns) for 2 hours" in approve["confirm"]["text"]["text"]

    request_approve(request_id=request.pk, approver=slack.bob, channel=Channel.WEB)
    deliver_outbox()
    [notice] = dm(fake_slack, "alice")
    assert "prod-pg/shop/public.customers (31 columns) is approved" in notice.text
    assert unsent_slack_rows() == []


def test_reasons_full_of_markup_still_fit_and_are_cut_visibly(slack, fake_slack):
    request = slack.request("email", reason="<b> & " * 600)  # 3,600 typed, 9,000 once escaped
    deliver_outbox()
    request_deny(request_id=request.pk, approver=slack.bob, reason="&" * 5000, channel=Channel.WEB)

    deliver_outbox()

    assert unsent_slack_rows() == []
    [message] = fake_slack.in_channel(APPROVALS)
    assert message.updates == 1 and not message.has_buttons
    shown = message.shown
    assert "Denied by Bob" in shown and "&amp;&amp;…" in shown
    assert "&lt;b&gt; &amp; …" in shown or "&lt;b&gt; …" in shown, "cut between entities, never inside one"
    [notice] = dm(fake_slack, "alice")
    assert "Denied by Bob" in notice.shown
    for kind in NotificationKind.BREAKGLASS, NotificationKind.DENIED:
        assert block_kit_problem(blocks.notice_message(kind, card_for(request.pk))[1]) == ""


def test_a_display_name_cannot_mention_everyone_from_the_notification_text(
    slack, fake_slack, client, after_ack
):
    slack.alice.display_name = "<!channel> Alice"
    slack.alice.save(update_fields=["display_name"])
    request = slack.request("email")

    deliver_outbox()
    post_interaction(client, click("deny", request.pk, user="UBOB"))
    post_interaction(client, deny_submission(request.pk, "no ticket", user="UBOB"))
    after_ack.run()

    [message] = fake_slack.in_channel(APPROVALS)
    assert "<!channel>" not in message.text
    assert "&lt;!channel&gt; Alice asks to unmask" in message.text
    [modal] = fake_slack.views
    assert "<!channel>" not in str(modal)
    assert [e["text"] for e in fake_slack.ephemerals] == [
        f":no_entry: You denied {request.ref}. &lt;!channel&gt; Alice is told why."
    ]


def test_the_first_message_already_mentions_the_requester_on_slack(slack, fake_slack):
    slack.request("email")

    deliver_outbox()

    [message] = fake_slack.in_channel(APPROVALS)
    assert "*Alice Engineer* (<@UALICE>) asks to see unmasked values" in message.shown
