"""Clicks and modal submissions, signed with Slack's scheme and posted to /slack/interactions.

Each refusal is checked for its reply and for having changed nothing. `after_ack` runs the work
Bolt does after acknowledging, so a test sees the HTTP answer before any decision is made."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.db import connections
from django.utils import timezone

from audit.failures import failure_tallies_fold
from audit.models import AuditEvent, Channel
from audit.services import SYSTEM
from jitaccess.models import AccessRequest, Approval, SlackLinkMethod
from jitaccess.services.requests import request_approve
from jitaccess.slack.services import slack_user_link
from jitaccess.states import State
from tests.slack.conftest import (
    SLACK_IDS,
    click,
    deliver_outbox,
    deny_submission,
    post_interaction,
    replay,
    sign,
)

pytestmark = pytest.mark.django_db


def nothing_changed(request, approvals=0):
    request.refresh_from_db()
    return request.state == State.PENDING and Approval.objects.filter(request=request).count() == approvals


def ephemeral_texts(fake_slack, user):
    return [e["text"] for e in fake_slack.ephemerals if e["user"] == SLACK_IDS.get(user, user)]


def test_a_click_is_acknowledged_first_and_decided_after(slack, client, after_ack, fake_slack):
    request = slack.request("email")

    response, _, _ = post_interaction(client, click("approve", request.pk, user="UBOB"))

    assert (response.status_code, response.content) == (200, b"")
    assert nothing_changed(request), "nothing is decided before Slack has its answer"
    after_ack.run()
    request.refresh_from_db()
    assert request.state == State.APPROVED
    assert Approval.objects.get(request=request).channel == Channel.SLACK
    [reply] = ephemeral_texts(fake_slack, "bob")
    assert reply.startswith(f":white_check_mark: You approved {request.ref}: access until")
    event = AuditEvent.objects.get(action="request.approved")
    assert (event.channel, event.actor_name) == (Channel.SLACK, "Bob")


@pytest.mark.parametrize(
    ("forgery", "reason"),
    [
        ({"secret": "not-the-signing-secret"}, "signature does not match"),
        ({"timestamp": int(time.time()) - 6 * 60}, "timestamp outside the 5-minute window"),
    ],
)
def test_a_forged_or_stale_request_gets_401_and_an_audit_event(
    slack, client, after_ack, fake_slack, forgery, reason
):
    request = slack.request("email")

    response, _, _ = post_interaction(client, click("approve", request.pk, user="UBOB"), **forgery)

    assert response.status_code == 401
    after_ack.run()
    assert nothing_changed(request)
    assert fake_slack.ephemerals == []
    (event,) = failure_tallies_fold(now=timezone.now() + timedelta(hours=1))  # counted, then chained
    assert (event.action, event.channel, event.detail["sources"][0]["reason"]) == (
        "slack.forged_request",
        Channel.SLACK,
        reason,
    )


def test_a_request_without_signature_headers_gets_401(slack, client):
    response = client.post(
        "/slack/interactions", data="payload=%7B%7D", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 401
    (event,) = failure_tallies_fold(now=timezone.now() + timedelta(hours=1))
    assert event.detail["sources"][0]["reason"] == "missing signature headers"


def test_a_signed_request_replayed_after_the_window_gets_401(slack, client, after_ack, time_machine):
    slack.policy.approvals_required = 2
    slack.policy.save()
    request = slack.request("email")
    _, body, headers = post_interaction(client, click("approve", request.pk, user="UBOB"))
    after_ack.run()

    time_machine.move_to(request.created_at + timedelta(minutes=6))
    assert replay(client, body, headers).status_code == 401
    assert nothing_changed(request, approvals=1)


def test_a_payload_replayed_or_retried_inside_the_window_changes_nothing(
    slack, client, after_ack, fake_slack
):
    slack.policy.approvals_required = 2
    slack.policy.save()
    request = slack.request("email")
    payload = click("approve", request.pk, user="UBOB")
    _, body, headers = post_interaction(client, payload)
    after_ack.run()

    assert (replay(client, body, headers).status_code, after_ack.pending) == (200, [])
    retry, _, _ = post_interaction(
        client, payload, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "timeout"}
    )
    assert (retry.status_code, after_ack.pending) == (200, [])

    assert nothing_changed(request, approvals=1)
    assert len(ephemeral_texts(fake_slack, "bob")) == 1


def test_a_double_click_counts_once(slack, client, after_ack, fake_slack):
    slack.policy.approvals_required = 2
    slack.policy.save()
    request = slack.request("email")

    for _ in range(2):  # two clicks: two payloads, each with its own trigger
        post_interaction(client, click("approve", request.pk, user="UBOB"))
    after_ack.run()

    assert nothing_changed(request, approvals=1)
    assert ephemeral_texts(fake_slack, "bob") == [
        f":white_check_mark: Your approval of {request.ref} is recorded: 1 of 2 approvals.",
        f"You already approved {request.ref}: 1 of 2 approvals. Nothing changed.",
    ]


def test_an_unknown_action_is_answered_privately_and_changes_nothing(slack, client, after_ack, fake_slack):
    request = slack.request("email")

    response, _, _ = post_interaction(client, click("launch_rockets", request.pk, user="UBOB"))
    after_ack.run()

    assert response.status_code == 200
    assert nothing_changed(request)
    assert ephemeral_texts(fake_slack, "bob") == ["Veil does not know this button. Nothing changed."]


def test_an_unlinked_clicker_is_told_how_to_link_and_nothing_changes(slack, client, after_ack, fake_slack):
    request = slack.request("email")

    post_interaction(client, click("approve", request.pk, user="USTRANGER"))
    after_ack.run()

    assert nothing_changed(request)
    [reply] = ephemeral_texts(fake_slack, "USTRANGER")
    assert "Veil cannot tell which Veil account is yours" in reply and reply.endswith("Nothing changed.")
    refused = AuditEvent.objects.get(action="slack.action.refused")
    assert refused.detail == {"slack_user_id": "USTRANGER", "action": "approve", "reason": "unlinked"}


def test_someone_who_is_not_an_approver_is_told_privately(slack, client, after_ack, fake_slack):
    request = slack.request("email")
    slack_user_link(
        slack_user_id="UEVE", user=slack.eve, method=SlackLinkMethod.ADMIN, actor=SYSTEM, channel=Channel.CLI
    )

    post_interaction(client, click("approve", request.pk, user="UEVE"))
    post_interaction(client, click("deny", request.pk, user="UEVE"))
    after_ack.run()

    assert nothing_changed(request)
    assert fake_slack.views == [], "no deny modal for someone who may not deny"
    assert (
        ephemeral_texts(fake_slack, "eve")
        == ["You are not an approver for this request. Nothing changed."] * 2
    )
    refused = AuditEvent.objects.filter(action="slack.action.refused").order_by("seq")
    assert [(e.actor_name, e.detail["action"]) for e in refused] == [("eve", "approve"), ("eve", "deny")], (
        "both attempts reach the denied-attempts report"
    )


def test_someone_not_linked_yet_who_is_not_an_approver_is_told_that_not_that_veil_cannot_tell(
    slack, client, after_ack, fake_slack
):
    request = slack.request("email")  # Eve is in the workspace under her verified email, never linked

    post_interaction(client, click("approve", request.pk, user="UEVE"))
    after_ack.run()

    assert nothing_changed(request)
    assert ephemeral_texts(fake_slack, "eve") == [
        "You are not an approver for this request. Nothing changed."
    ]
    refused = AuditEvent.objects.get(action="slack.action.refused")
    assert (refused.actor_name, refused.detail["reason"]) == (
        "eve",
        "You are not an approver for this request.",
    )
    assert AuditEvent.objects.filter(action="slack.user_linked", target_repr="eve").exists()


def test_a_clicker_slack_cannot_describe_now_still_gets_an_answer(slack, client, after_ack, fake_slack):
    request = slack.request("email")
    fake_slack.fail("users.info", "missing_scope")  # a token installed before users:read.email

    post_interaction(client, click("approve", request.pk, user="UEVE"))
    after_ack.run()

    assert nothing_changed(request)
    [reply] = ephemeral_texts(fake_slack, "eve")
    assert reply.startswith("Veil cannot tell which Veil account is yours")


def test_a_slack_profile_email_alone_links_nobody(slack, client, after_ack, fake_slack):
    """Only a lookup of the email that leads back to the clicker links: a profile claiming Bob's
    email while Slack files that email under Bob's own account proves nothing."""
    request = slack.request("email")
    fake_slack.profiles["UMALLORY"] = slack.bob.email

    post_interaction(client, click("approve", request.pk, user="UMALLORY"))
    after_ack.run()

    assert nothing_changed(request)
    [reply] = ephemeral_texts(fake_slack, "UMALLORY")
    assert reply.startswith("Veil cannot tell which Veil account is yours")


def test_the_requester_cannot_approve_even_from_a_second_slack_account(slack, client, after_ack, fake_slack):
    slack.policy.approver_roles.first().users.add(slack.alice)  # an approver, but not of her own request
    request = slack.request("email")
    slack_user_link(
        slack_user_id="UALICE2",
        user=slack.alice,
        method=SlackLinkMethod.ADMIN,
        actor=SYSTEM,
        channel=Channel.CLI,
    )

    post_interaction(client, click("approve", request.pk, user="UALICE"))
    post_interaction(client, click("approve", request.pk, user="UALICE2"))
    after_ack.run()

    assert nothing_changed(request)
    replies = [e["text"] for e in fake_slack.ephemerals]
    assert replies == ["You cannot approve your own request. Nothing changed."] * 2


def test_a_click_on_a_decided_request_changes_nothing(slack, client, after_ack, fake_slack):
    request = slack.request("email")
    request_approve(request_id=request.pk, approver=slack.bob, channel=Channel.WEB)

    post_interaction(client, click("approve", request.pk, user="UCAROL"))
    post_interaction(client, click("deny", request.pk, user="UCAROL"))
    after_ack.run()

    request.refresh_from_db()
    assert request.state == State.APPROVED and request.approvals.count() == 1
    assert fake_slack.views == []
    assert ephemeral_texts(fake_slack, "carol") == [
        f"{request.ref}: cannot approve: the request is approved (grant active). Nothing changed.",
        f"{request.ref}: cannot deny: the request is approved (grant active). Nothing changed.",
    ]


def test_above_the_confirmation_level_a_slack_click_does_not_approve(
    slack, settings, client, after_ack, fake_slack
):
    settings.SLACK_WEB_CONFIRM_LEVEL = 3
    request = slack.request("email")

    post_interaction(client, click("approve_in_web", request.pk, user="UBOB"))  # the link button
    post_interaction(client, click("approve", request.pk, user="UBOB"))  # a message from before the change
    after_ack.run()

    assert nothing_changed(request)
    [reply] = ephemeral_texts(fake_slack, "bob")
    assert f"{request.ref} covers level 3: approve it in Veil after signing in" in reply


def test_deny_opens_a_modal_inside_the_window_and_its_reason_reaches_everyone(
    slack, client, after_ack, fake_slack
):
    request = slack.request("email")
    deliver_outbox()
    message = fake_slack.posts()[0]
    payload = click("deny", request.pk, user="UBOB", message_ts=message.ts)

    response, _, _ = post_interaction(client, payload)

    assert response.status_code == 200
    [opened] = fake_slack.views  # before the answer: the trigger ID is only valid inside the window
    assert opened["trigger_id"] == payload["trigger_id"]
    assert opened["view"]["callback_id"] == "deny_modal"
    assert json.loads(opened["view"]["private_metadata"]) == {
        "request": request.pk,
        "channel": "CAPPROVALS",
        "ts": message.ts,
    }
    after_ack.run()
    assert nothing_changed(request), "opening the modal decides nothing"

    response, _, _ = post_interaction(
        client, deny_submission(request.pk, "use the staging copy", user="UBOB")
    )
    assert (response.status_code, response.content) == (200, b"")
    after_ack.run()
    deliver_outbox()

    request.refresh_from_db()
    assert (request.state, request.deny_reason) == (State.DENIED, "use the staging copy")
    assert "Denied by Bob" in message.shown and "use the staging copy" in message.shown
    assert not message.has_buttons
    assert any("use the staging copy" in m.shown for m in fake_slack.in_channel("DALICE"))
    assert ephemeral_texts(fake_slack, "bob") == [
        f":no_entry: You denied {request.ref}. Alice Engineer is told why."
    ]


def test_a_deny_without_a_reason_keeps_the_modal_open(slack, client, after_ack):
    request = slack.request("email")

    response, _, _ = post_interaction(client, deny_submission(request.pk, "   ", user="UBOB"))
    after_ack.run()

    assert json.loads(response.content) == {
        "response_action": "errors",
        "errors": {"reason": "Say why the request is denied."},
    }
    assert nothing_changed(request)


def test_a_deny_submitted_by_an_unknown_slack_account_changes_nothing(slack, client, after_ack, fake_slack):
    request = slack.request("email")

    post_interaction(client, click("deny", request.pk, user="USTRANGER"))
    assert len(fake_slack.views) == 1, "who it is is worked out after the answer"
    post_interaction(client, deny_submission(request.pk, "no", user="USTRANGER"))  # typed quickly
    after_ack.run()

    assert nothing_changed(request)
    assert "Veil cannot tell which Veil account is yours" in ephemeral_texts(fake_slack, "USTRANGER")[0]
    [modal] = fake_slack.views
    assert "Veil cannot tell which Veil account is yours" in modal["view"]["blocks"][0]["text"]["text"]


def test_an_outsider_not_linked_yet_sees_the_deny_modal_replaced_by_why_they_cannot_deny(
    slack, client, after_ack, fake_slack
):
    request = slack.request("email")

    post_interaction(client, click("deny", request.pk, user="UEVE"))  # Veil does not know Eve yet
    after_ack.run()

    assert nothing_changed(request)
    [modal] = fake_slack.views
    assert modal.get("updates") == 1
    assert "submit" not in modal["view"], "nothing left to submit"
    assert modal["view"]["title"]["text"] == f"Deny {request.ref}"
    assert (
        modal["view"]["blocks"][0]["text"]["text"]
        == "You are not an approver for this request. Nothing changed."
    )
    assert ephemeral_texts(fake_slack, "eve") == []

    post_interaction(client, click("deny", request.pk, user="UBOB"))  # an approver keeps the modal
    after_ack.run()
    assert [v.get("updates") for v in fake_slack.views] == [1, None]


@pytest.mark.django_db(transaction=True)
def test_two_approvers_clicking_at_once_make_one_decision(slack, live_server, fake_slack, monkeypatch):
    """Through the real server and Bolt's own worker threads: each thread's database connection is
    closed after its work, so none outlives the test."""
    monkeypatch.setitem(connections["default"].settings_dict, "CONN_MAX_AGE", 0)
    request = slack.request("email")
    start = threading.Barrier(2)
    answers = []

    def approve_as(slack_user_id):
        body = urlencode({"payload": json.dumps(click("approve", request.pk, user=slack_user_id))})
        timestamp = int(time.time())
        headers = {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": sign(body, timestamp)}
        http = urllib.request.Request(  # noqa: S310 (the live server on loopback)
            f"{live_server.url}/slack/interactions", data=body.encode(), headers=headers
        )
        start.wait()
        with urllib.request.urlopen(http, timeout=5) as response:  # noqa: S310
            answers.append(response.status)

    threads = [threading.Thread(target=approve_as, args=(who,)) for who in ("UBOB", "UCAROL")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 10
    while len(fake_slack.ephemerals) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # waiting for Bolt's threads to finish, not for time to pass

    assert answers == [200, 200]
    request = AccessRequest.objects.get(pk=request.pk)
    assert request.state == State.APPROVED and request.approvals.count() == 1
    winner, loser = sorted((e["text"] for e in fake_slack.ephemerals), key=lambda text: "cannot" in text)
    assert winner.startswith(f":white_check_mark: You approved {request.ref}")
    assert loser == f"{request.ref}: cannot approve: the request is approved (grant active). Nothing changed."
