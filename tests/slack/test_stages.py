"""Approval in stages from Slack (the data owner, then security: tests.jitaccess.stages): signed
clicks on /slack/interactions, the outbox delivered to the fake Slack, the message read back."""

from __future__ import annotations

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from jitaccess.models import AccessRequest, Approval, DeliveryState, Notification
from jitaccess.slack.request_modal import status_text
from jitaccess.states import State
from tests.jitaccess.stages import staged_world
from tests.slack.conftest import (
    APPROVALS,
    click,
    deliver_outbox,
    deny_submission,
    post_interaction,
    replay,
)

pytestmark = pytest.mark.django_db
STAGE_IDS = {"frank": "UFRANK", "grace": "UGRACE"}


@pytest.fixture
def staged(slack, fake_slack):
    staged = staged_world(slack)
    for person in (staged.frank, staged.grace):
        person.email_verified = True
        person.save(update_fields=["email_verified"])
        fake_slack.users[person.email] = STAGE_IDS[person.username]
    return staged


def replies_to(fake_slack, user_id):
    return [e["text"] for e in fake_slack.ephemerals if e["user"] == user_id]


def approvals_message(fake_slack):
    [message] = fake_slack.in_channel(APPROVALS)
    return message


def test_the_message_says_which_stage_waits_and_stage_two_is_asked_once_stage_one_is_done(
    staged, client, after_ack, fake_slack
):
    request = staged.request("email")
    deliver_outbox()
    message = approvals_message(fake_slack)
    assert "Waiting for approval at stage 1 of 2 (Data owner): 0 of 1 approval" in message.shown
    assert "2 stages: Data owner → Security" in message.shown
    assert fake_slack.replies() == []

    post_interaction(client, click("approve", request.pk, user="UBOB"))
    after_ack.run()
    assert replies_to(fake_slack, "UBOB") == [
        f":white_check_mark: Your approval of {request.ref} is recorded: "
        "stage 2 of 2 (Security) has 0 of 1 approval."
    ]
    deliver_outbox()

    message = approvals_message(fake_slack)
    assert "Waiting for approval at stage 2 of 2 (Security): 0 of 1 approval (Bob)" in message.shown
    assert message.has_buttons
    [asked] = fake_slack.replies()
    assert (asked.channel, asked.thread_ts) == (APPROVALS, message.ts)
    assert asked.text.startswith(
        f":arrow_forward: {request.ref}: stage 1 (Data owner) is complete, "
        "so stage 2 of 2 (Security) decides now."
    )
    mentioned = {uid for uid in ("UBOB", "UCAROL", "UFRANK", "UGRACE") if f"<@{uid}>" in asked.text}
    assert mentioned == {"UCAROL", "UFRANK", "UGRACE"}, "security, not bob who approved stage 1"
    [broadcast] = [c for c in fake_slack.calls_to("chat.postMessage") if c.params.get("thread_ts")]
    assert str(broadcast.params.get("reply_broadcast")).lower() == "true"

    post_interaction(client, click("approve", request.pk, user="UFRANK"))
    after_ack.run()
    deliver_outbox()

    request.refresh_from_db()
    assert request.state == State.APPROVED
    message = approvals_message(fake_slack)
    assert "Approved by Bob, Frank" in message.shown and not message.has_buttons
    assert len(fake_slack.replies()) == 1, "the stage is asked once"


def test_a_stage_two_approver_clicking_while_stage_one_waits_is_told_and_nothing_changes(
    staged, client, after_ack, fake_slack
):
    request = staged.request("email")

    post_interaction(client, click("approve", request.pk, user="UFRANK"))
    after_ack.run()

    assert replies_to(fake_slack, "UFRANK") == [
        f"{request.ref} waits for stage 1 (Data owner); you decide at stage 2 (Security) and will be asked "
        "when it opens. Nothing changed."
    ]
    request.refresh_from_db()
    assert (request.state, request.stage, request.approvals.count()) == (State.PENDING, 1, 0)
    refused = AuditEvent.objects.get(action="slack.action.refused")
    assert "waits for stage 1" in refused.detail["reason"]


def test_approving_again_at_the_next_stage_is_refused_and_a_replayed_payload_changes_nothing(
    staged, client, after_ack, fake_slack
):
    request = staged.request("email")
    _, body, headers = post_interaction(client, click("approve", request.pk, user="UCAROL"))
    after_ack.run()  # carol completes stage 1; she is in security too

    assert (replay(client, body, headers).status_code, after_ack.pending) == (200, [])
    post_interaction(client, click("approve", request.pk, user="UCAROL"))  # a second, fresh click
    after_ack.run()

    assert replies_to(fake_slack, "UCAROL")[1] == (
        f"You approved {request.ref} at stage 1 (Data owner); stage 2 (Security) needs someone else. "
        "Nothing changed."
    )
    request.refresh_from_db()
    assert (request.state, request.stage) == (State.PENDING, 2)
    assert list(Approval.objects.filter(request=request).values_list("approver__username", "stage")) == [
        ("carol", 1)
    ]


def test_a_stage_one_approver_cannot_deny_once_stage_two_waits_but_security_can(
    staged, client, after_ack, fake_slack
):
    request = staged.request("email")
    post_interaction(client, click("approve", request.pk, user="UBOB"))
    after_ack.run()

    post_interaction(client, click("deny", request.pk, user="UBOB"))
    after_ack.run()
    assert replies_to(fake_slack, "UBOB")[-1].startswith(
        f"You approved {request.ref} at stage 1 (Data owner)"
    )
    assert fake_slack.views == [], "no modal for someone who may not deny"

    post_interaction(client, deny_submission(request.pk, "No ticket for this.", user="UGRACE"))
    after_ack.run()
    deliver_outbox()

    request.refresh_from_db()
    assert request.state == State.DENIED
    assert AuditEvent.objects.get(action="request.denied").detail["stage_name"] == "Security"
    assert "Denied by Grace" in approvals_message(fake_slack).shown


def test_a_stage_announcement_delivered_after_the_stage_was_decided_is_not_sent(
    staged, client, after_ack, fake_slack
):
    request = staged.request("email")
    deliver_outbox()
    post_interaction(client, click("approve", request.pk, user="UBOB"))
    after_ack.run()
    post_interaction(client, click("approve", request.pk, user="UFRANK"))  # before the outbox runs
    after_ack.run()

    deliver_outbox()

    asked = Notification.objects.get(request=request, kind="approval_needed", channel="slack", stage=2)
    assert asked.state == DeliveryState.SKIPPED
    assert "no longer waits" in asked.last_error
    assert fake_slack.replies() == []
    assert AccessRequest.objects.get(pk=request.pk).state == State.APPROVED


def test_veil_status_names_the_stage_a_pending_request_waits_for(staged, client, after_ack):
    request = staged.request("email")
    post_interaction(client, click("approve", request.pk, user="UBOB"))
    after_ack.run()
    request = AccessRequest.objects.prefetch_related("approvals").get(pk=request.pk)

    text = status_text([request], [], link=str, new_request_url="", now=timezone.now())

    assert "stage 2 of 2 (Security), 0 of 1 approval(s)" in text
