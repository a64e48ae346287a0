"""Slack messages through the outbox: posted once per request and destination, kept true as the
request changes however it changes, and delivered after any outage."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import Channel
from jitaccess.delivery import deliver
from jitaccess.models import (
    DeliveryState,
    Notification,
    NotificationChannel,
    NotificationKind,
    SlackMessage,
    SlackRoute,
)
from jitaccess.services.grants import grant_end, requests_sweep
from jitaccess.services.requests import request_approve, request_cancel, request_deny
from jitaccess.slack.services import reminders_announce
from jitaccess.slack.tasks import resume_slack_deliveries
from jitaccess.states import Action
from tests.slack.conftest import APPROVALS, ESCALATIONS, SLACK_IDS, deliver_outbox
from tests.slack.fake_slack import Message

pytestmark = pytest.mark.django_db
SLACK = NotificationChannel.SLACK


def dm(fake_slack, username):
    return fake_slack.in_channel("D" + SLACK_IDS[username][1:])


def test_a_request_is_posted_to_the_channel_with_what_an_approver_needs_to_decide(slack, fake_slack):
    request = slack.request("email", ticket="https://tickets.example/INC-4711?a=1&b=2")

    deliver_outbox()

    [message] = fake_slack.in_channel(APPROVALS)
    for shown in (
        "Alice Engineer",
        "prod-pg (prod)",
        "*Database*\\nshop",
        "public.customers",
        "`email` · 3 · Restricted (PII)",
        "2 hours",
        ">INC-4711 refund mismatch",
        "<https://tickets.example/INC-4711?a=1&amp;b=2|",
        "prod PII · 1 approval needed",
        "0 of 1 approval",
        f"https://veil.example/requests/{request.pk}/",
    ):
        assert shown in message.shown, shown
    actions = next(b for b in message.blocks if b["type"] == "actions")["elements"]
    assert [(a["action_id"], a.get("value")) for a in actions] == [
        ("approve", str(request.pk)),
        ("deny", str(request.pk)),
        ("open_in_web", None),
    ]
    stored = SlackMessage.objects.get(request=request)
    assert (stored.destination, stored.channel, stored.ts) == (APPROVALS, APPROVALS, message.ts)


def test_an_extension_asks_for_more_time_on_the_grant_it_extends(slack, fake_slack):
    first = slack.request("email")
    request_approve(request_id=first.pk, approver=slack.bob, channel=Channel.WEB)
    deliver_outbox()
    extension = slack.request("email", duration=timedelta(hours=1), extends=first)

    deliver_outbox()

    message = next(m for m in fake_slack.in_channel(APPROVALS) if extension.ref in m.text)
    assert f"Extension request {extension.ref}" in message.shown
    assert f"asks for 1 hour more on {first.ref}" in message.shown
    asks = f"asks for more time on prod-pg/shop/public.customers (email): extending {first.ref}"
    assert asks in message.text
    assert "asks to unmask" not in message.text


def test_text_people_typed_cannot_mention_everyone_or_fake_links(slack, fake_slack):
    slack.request("email", reason="<!channel> please <https://evil.example|click>")

    deliver_outbox()

    [message] = fake_slack.in_channel(APPROVALS)
    assert "<!channel>" not in message.shown
    assert "&lt;!channel&gt; please &lt;https://evil.example|click&gt;" in message.shown


def test_a_redelivered_task_posts_nothing_twice(slack, fake_slack):
    request = slack.request("email")
    row = Notification.objects.get(channel=SLACK, kind=NotificationKind.APPROVAL_NEEDED)
    assert deliver(row.pk)

    # The worker posted, then died before marking the row sent; the broker hands the task out again.
    Notification.objects.filter(pk=row.pk).update(state=DeliveryState.PENDING, next_attempt_at=None)
    assert deliver(row.pk)
    assert not deliver(row.pk), "a sent row is not claimed again"

    assert len(fake_slack.in_channel(APPROVALS)) == 1
    assert SlackMessage.objects.filter(request=request).count() == 1


def test_without_a_slack_token_approvals_are_web_only_and_no_slack_rows_exist(slack, settings, fake_slack):
    settings.SLACK_ENABLED = False
    request = slack.request("email")
    request_approve(request_id=request.pk, approver=slack.bob, channel=Channel.WEB)

    assert not Notification.objects.filter(channel=SLACK).exists()
    assert Notification.objects.filter(
        kind=NotificationKind.APPROVED, channel=NotificationChannel.WEB
    ).exists()
    deliver_outbox()
    assert fake_slack.calls == []


def test_a_project_can_also_dm_its_approvers_but_never_about_their_own_request(slack, fake_slack):
    SlackRoute.objects.create(project=slack.project, dm_approvers=True)
    slack.policy.approver_roles.first().users.add(slack.alice)  # Alice approves for others

    slack.request("email")
    deliver_outbox()

    assert len(fake_slack.in_channel(APPROVALS)) == 1
    assert len(dm(fake_slack, "bob")) == len(dm(fake_slack, "carol")) == 1
    assert dm(fake_slack, "alice") == [], "the requester is not asked to approve her own request"


def test_the_policy_channel_wins_and_no_channel_at_all_means_dms(slack, settings, fake_slack):
    fake_slack.channels["CPOLICY"] = {"name": "prod-pii", "is_member": True}
    slack.policy.slack_channel = "#prod-pii"
    slack.policy.save()
    slack.request("email")
    slack.policy.slack_channel = ""
    slack.policy.save()
    settings.SLACK_APPROVAL_CHANNEL = ""
    slack.request("email")

    deliver_outbox()

    assert len(fake_slack.in_channel("CPOLICY")) == 1
    assert fake_slack.in_channel(APPROVALS) == []
    assert len(dm(fake_slack, "bob")) == len(dm(fake_slack, "carol")) == 1


def test_scopes_at_the_web_confirmation_level_are_approved_in_the_web_ui(slack, settings, fake_slack):
    settings.SLACK_WEB_CONFIRM_LEVEL = 3
    request = slack.request("email")

    deliver_outbox()

    [message] = fake_slack.in_channel(APPROVALS)
    actions = next(b for b in message.blocks if b["type"] == "actions")["elements"]
    assert actions[0]["action_id"] == "approve_in_web"
    assert actions[0]["url"] == f"https://veil.example/requests/{request.pk}/"
    assert "approve in Veil after signing in" in message.shown


def test_a_scope_with_an_unclassified_column_is_approved_in_the_web_ui(slack, fake_slack):
    """email is classified 3 (below the default web-confirmation level 4), phone nobody has
    classified: its level is unknown, so a Slack click may not approve the pair."""
    request = slack.request("email", "phone")

    deliver_outbox()

    [message] = fake_slack.in_channel(APPROVALS)
    actions = next(b for b in message.blocks if b["type"] == "actions")["elements"]
    assert actions[0]["action_id"] == "approve_in_web"
    assert actions[0]["url"] == f"https://veil.example/requests/{request.pk}/"


def test_a_decision_on_the_web_updates_the_slack_message_and_tells_the_requester(slack, fake_slack):
    request = slack.request("email")
    deliver_outbox()

    request_approve(request_id=request.pk, approver=slack.bob, channel=Channel.WEB)
    deliver_outbox()

    [message] = fake_slack.in_channel(APPROVALS)
    assert message.updates == 1
    assert "Approved by Bob at <!date^" in message.shown
    assert "access until <!date^" in message.shown
    assert not message.has_buttons
    [notice] = dm(fake_slack, "alice")
    assert "is approved" in notice.text
    assert dm(fake_slack, "bob") == []


def test_a_quorum_of_two_shows_each_approval_wherever_it_was_given(slack, fake_slack):
    slack.policy.approvals_required = 2
    slack.policy.save()
    request = slack.request("email")
    deliver_outbox()

    request_approve(request_id=request.pk, approver=slack.bob, channel=Channel.SLACK)
    deliver_outbox()
    [message] = fake_slack.in_channel(APPROVALS)
    assert "1 of 2 approvals (Bob)" in message.shown
    assert message.has_buttons

    request_approve(request_id=request.pk, approver=slack.carol, channel=Channel.WEB)
    deliver_outbox()
    assert "Approved by Bob, Carol" in message.shown
    assert not message.has_buttons
    assert message.updates == 2


@pytest.mark.parametrize(
    ("end", "shown"),
    [
        ("deny", "Denied by Bob"),
        ("cancel", "Cancelled by Alice Engineer"),
        ("revoke", "Revoked by dave"),
        ("relinquish", "Given up by Alice Engineer"),
    ],
)
def test_every_way_a_request_ends_is_shown_in_place_without_buttons(slack, fake_slack, end, shown):
    request = slack.request("email")
    deliver_outbox()
    if end == "deny":
        request_deny(request_id=request.pk, approver=slack.bob, reason="use the replica", channel=Channel.WEB)
    elif end == "cancel":
        request_cancel(request_id=request.pk, requester=slack.alice, channel=Channel.WEB)
    else:
        request_approve(request_id=request.pk, approver=slack.bob, channel=Channel.WEB)
        user = slack.dave if end == "revoke" else slack.alice
        grant_end(request_id=request.pk, user=user, action=Action(end), channel=Channel.WEB)

    deliver_outbox()

    [message] = fake_slack.in_channel(APPROVALS)
    assert shown in message.shown
    assert not message.has_buttons
    if end == "deny":
        denial = next(m for m in dm(fake_slack, "alice") if "denied" in m.text)
        assert "use the replica" in denial.shown


def test_a_revocation_reason_is_shown_in_the_channel_and_told_to_the_requester(slack, fake_slack):
    request = slack.request("email")
    request_approve(request_id=request.pk, approver=slack.bob, channel=Channel.WEB)
    deliver_outbox()

    grant_end(
        request_id=request.pk,
        user=slack.dave,
        action=Action.REVOKE,
        channel=Channel.WEB,
        reason="Access <!channel> no longer needed",
    )
    deliver_outbox()

    [message] = fake_slack.in_channel(APPROVALS)
    revoked = next(m for m in dm(fake_slack, "alice") if "was revoked" in m.text)
    for shown in (message.shown, revoked.shown):
        assert "Revoked by dave at" in shown
        assert "(Access &lt;!channel&gt; no longer needed); values are masked again." in shown


def test_the_requester_is_warned_before_expiry_with_an_extend_link_and_told_at_expiry(
    slack, fake_slack, time_machine
):
    request = slack.request("email")
    request_approve(request_id=request.pk, approver=slack.bob, channel=Channel.WEB)
    deliver_outbox()
    request.refresh_from_db()

    time_machine.move_to(request.expires_at - timedelta(minutes=10))
    requests_sweep()
    deliver_outbox()
    warning = dm(fake_slack, "alice")[-1]
    assert "ends within 15 minutes" in warning.text
    extend = next(b for b in warning.blocks if b["type"] == "actions")["elements"][0]
    assert extend["url"] == f"https://veil.example/requests/new/?extends={request.pk}"

    time_machine.move_to(request.expires_at + timedelta(minutes=1))
    requests_sweep()
    deliver_outbox()
    assert "has ended" in dm(fake_slack, "alice")[-1].text
    [message] = fake_slack.in_channel(APPROVALS)
    assert "Expired <!date^" in message.shown
    assert [m.text for m in dm(fake_slack, "bob")] == [], "approvers get nothing about the grant's end"


def test_a_pending_request_is_reminded_then_escalated_then_closed_and_said_so(
    slack, settings, fake_slack, time_machine
):
    settings.SLACK_ESCALATION_MENTION = "<!subteam^S0SECURITY>"
    request = slack.request("email")
    deliver_outbox()

    time_machine.move_to(timezone.now() + timedelta(seconds=settings.SLACK_REMINDER_AFTER_S + 1))
    assert reminders_announce().reminders == 1
    assert reminders_announce().reminders == 0, "each message is reminded once"
    deliver_outbox()
    [reminder] = fake_slack.replies()
    assert reminder.thread_ts == fake_slack.in_channel(APPROVALS)[0].ts
    assert "still waiting for approval (0 of 1 approval)" in reminder.text

    time_machine.move_to(timezone.now() + timedelta(seconds=settings.SLACK_ESCALATION_AFTER_S))
    assert reminders_announce().escalations == 1
    deliver_outbox()
    [escalated] = fake_slack.in_channel(ESCALATIONS)
    assert "Escalated" in escalated.shown and "<!subteam^S0SECURITY>" in escalated.shown
    assert escalated.has_buttons

    time_machine.move_to(request.pending_until + timedelta(minutes=1))
    requests_sweep()
    deliver_outbox()
    for message in (fake_slack.in_channel(APPROVALS)[0], escalated):
        assert "Timed out: nobody decided" in message.shown
        assert not message.has_buttons
    assert "Nobody decided" in dm(fake_slack, "alice")[-1].text


def test_slack_down_for_a_whole_outage_then_back_delivers_everything_once(slack, fake_slack, time_machine):
    fake_slack.down = True
    approved, denied = slack.request("email"), slack.request("email")
    request_approve(request_id=approved.pk, approver=slack.bob, channel=Channel.WEB)
    request_deny(request_id=denied.pk, approver=slack.carol, reason="not needed", channel=Channel.WEB)

    for _ in range(12):  # longer than the outbox's attempts: the rows give up
        deliver_outbox()
        time_machine.move_to(timezone.now() + timedelta(hours=1))
        assert resume_slack_deliveries() == 0, "nothing resumes while Slack is still down"
    # State changes of messages not yet posted have nothing to update; the rest gave up.
    rows = Notification.objects.filter(channel=SLACK).exclude(kind=NotificationKind.STATE_CHANGED)
    assert set(rows.values_list("state", flat=True)) == {DeliveryState.FAILED}
    assert fake_slack.posts() == []

    fake_slack.down = False
    assert resume_slack_deliveries() == rows.count()
    deliver_outbox()

    assert set(rows.values_list("state", flat=True)) == {DeliveryState.SENT}
    messages = fake_slack.in_channel(APPROVALS)
    assert len(messages) == 2, "one message per request"
    assert "Approved by Bob" in messages[0].shown and "Denied by Carol" in messages[1].shown
    assert not any(m.has_buttons for m in messages)
    notices = [m.text for m in dm(fake_slack, "alice")]
    assert len(notices) == 2
    assert any(f"{approved.ref} for" in text and "is approved" in text for text in notices)
    assert any(f"{denied.ref} for" in text and "is denied" in text for text in notices)


def test_a_short_rate_limit_is_waited_out_in_the_call(slack, fake_slack):
    fake_slack.rate_limit("chat.postMessage", retry_after=0)

    slack.request("email")
    deliver_outbox()

    assert [c.status for c in fake_slack.calls_to("chat.postMessage")] == [429, 200]
    assert len(fake_slack.in_channel(APPROVALS)) == 1


def test_a_long_rate_limit_goes_back_to_the_outbox_which_retries_later(slack, fake_slack, time_machine):
    fake_slack.rate_limit("chat.postMessage", retry_after=120)

    slack.request("email")
    deliver_outbox()
    row = Notification.objects.get(channel=SLACK, kind=NotificationKind.APPROVAL_NEEDED)
    assert row.state == DeliveryState.PENDING and row.last_error.startswith("SlackUnavailable: ratelimited")
    assert deliver_outbox() == 0, "backing off"

    time_machine.move_to(row.next_attempt_at + timedelta(seconds=1))
    deliver_outbox()
    assert [c.status for c in fake_slack.calls_to("chat.postMessage")] == [429, 200]
    assert len(fake_slack.in_channel(APPROVALS)) == 1


def test_a_post_that_hangs_past_the_timeout_is_retried_after_its_claim_lapses(
    slack, fake_slack, time_machine
):
    fake_slack.hang("chat.postMessage", seconds=5)
    request = slack.request("email")

    deliver_outbox()
    claim = SlackMessage.objects.get(request=request)
    assert claim.ts == "" and claim.claimed_until is not None, "unknown whether Slack posted: keep the claim"

    time_machine.move_to(claim.claimed_until + timedelta(seconds=1))
    deliver_outbox()
    assert len(fake_slack.in_channel(APPROVALS)) == 1
    assert SlackMessage.objects.get(request=request).ts


def test_a_state_change_waits_for_a_message_still_being_posted(slack, fake_slack, time_machine):
    request = slack.request("email")
    # Another worker has claimed the post and rendered the request as pending when Bob approves.
    SlackMessage.objects.create(
        request=request, destination=APPROVALS, claimed_until=timezone.now() + timedelta(seconds=60)
    )
    request_approve(request_id=request.pk, approver=slack.bob, channel=Channel.WEB)
    deliver_outbox()
    update = Notification.objects.get(kind=NotificationKind.STATE_CHANGED)
    assert update.state == DeliveryState.PENDING and "still being posted" in update.last_error

    # That worker finishes: the message is in Slack, showing the request as pending.
    fake_slack.messages.append(Message(channel=APPROVALS, ts="1.000100", text="pending", blocks=[]))
    SlackMessage.objects.filter(request=request).update(channel=APPROVALS, ts="1.000100", claimed_until=None)
    time_machine.move_to(update.next_attempt_at + timedelta(seconds=1))
    deliver_outbox()
    assert "Approved by Bob" in fake_slack.in_channel(APPROVALS)[0].shown


def test_a_message_deleted_in_slack_does_not_hold_up_updating_the_others(slack, fake_slack):
    SlackRoute.objects.create(project=slack.project, dm_approvers=True)
    request = slack.request("email")
    deliver_outbox()
    fake_slack.fail("chat.update", "message_not_found")  # the first message updated was deleted

    request_approve(request_id=request.pk, approver=slack.bob, channel=Channel.WEB)
    deliver_outbox()

    assert Notification.objects.get(kind=NotificationKind.STATE_CHANGED).state == DeliveryState.SENT
    posts = fake_slack.in_channel(APPROVALS) + dm(fake_slack, "bob") + dm(fake_slack, "carol")
    assert sum("Approved by Bob" in m.shown for m in posts) == 2


def test_a_dm_to_someone_slack_does_not_know_is_recorded_as_not_sent(slack, fake_slack, client):
    """It was marked sent although nothing left Veil; the request page now says it was not."""
    del fake_slack.users[slack.alice.email]
    request = slack.request("email")
    request_approve(request_id=request.pk, approver=slack.bob, channel=Channel.WEB)

    deliver_outbox()

    approved = Notification.objects.get(
        request=request, kind=NotificationKind.APPROVED, channel=NotificationChannel.SLACK
    )
    assert approved.state == DeliveryState.SKIPPED
    assert "has no Slack account Veil could find" in approved.last_error
    assert dm(fake_slack, "alice") == []
    client.force_login(slack.alice)
    page = client.get(f"/requests/{request.pk}/").content.decode()
    assert "Not sent" in page and "has no Slack account Veil could find" in page
