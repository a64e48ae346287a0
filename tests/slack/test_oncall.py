"""On-call approval in Slack: the approval message says whoever is on call may approve, the person
on call approves with a signed click, and a click by someone who is not on call (any more, after a
shift change) is refused privately, as for anyone who is not an approver. The on-call providers
are fake PagerDuty on loopback, asked by Veil's real client; Slack is the fake Slack."""

from __future__ import annotations

from datetime import timedelta

import pytest

from audit.models import AuditEvent, Channel
from jitaccess.models import Approval
from jitaccess.oncall import OnCallProvider
from jitaccess.slack.selectors import linked_user
from jitaccess.states import State
from tests.oncall.conftest import SCHEDULE, fake_opsgenie, fake_pagerduty, providers  # noqa: F401
from tests.oncall.fake_oncall import OnCall
from tests.slack.conftest import (
    APPROVALS,
    SLACK_IDS,
    click,
    deliver_outbox,
    deny_submission,
    post_interaction,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def oncall_slack(slack, providers):  # noqa: F811
    """Slack on, and the approval policy naming a PagerDuty schedule that approves the responder on
    call at once for up to 30 minutes."""
    slack.policy.oncall_provider = OnCallProvider.PAGERDUTY
    slack.policy.oncall_schedule_id = SCHEDULE
    slack.policy.oncall_responder_auto_approve = True
    slack.policy.oncall_responder_max_duration = timedelta(minutes=30)
    slack.policy.save()
    return slack


@pytest.fixture
def pagerduty(providers):  # noqa: F811
    return providers[0]


def on_call(pagerduty, *people: OnCall) -> None:
    pagerduty.schedule(SCHEDULE, "Data platform primary", *people)


def replies_to(fake_slack, username: str) -> list[str]:
    return [e["text"] for e in fake_slack.ephemerals if e["user"] == SLACK_IDS[username]]


def test_the_person_on_call_approves_in_slack_and_the_grant_is_made(
    oncall_slack, pagerduty, client, after_ack, fake_slack
):
    eve = oncall_slack.eve  # approver only by being on call
    on_call(pagerduty, OnCall.for_hours(eve.email))
    request = oncall_slack.request("email")
    deliver_outbox()
    [message] = fake_slack.in_channel(APPROVALS)
    assert "Whoever is on call for PagerDuty schedule PSCHED1 may approve too." in message.shown

    response, _, _ = post_interaction(
        client, click("approve", request.pk, user="UEVE", message_ts=message.ts)
    )
    assert response.status_code == 200
    after_ack.run()
    deliver_outbox()

    request.refresh_from_db()
    assert request.state == State.APPROVED and request.grant is not None
    approval = Approval.objects.get(request=request)
    assert (approval.approver, approval.channel) == (eve, Channel.SLACK)
    [reply] = replies_to(fake_slack, "eve")
    assert reply.startswith(f":white_check_mark: You approved {request.ref}: access until")
    recorded = AuditEvent.objects.get(action="request.approval_recorded")
    assert recorded.detail["oncall"].startswith(
        "on call for PagerDuty schedule “Data platform primary” (PSCHED1)"
    )
    assert "Approved by" in message.shown and not message.has_buttons


def test_someone_not_on_call_clicking_approve_is_refused_as_today(
    oncall_slack, pagerduty, client, after_ack, fake_slack
):
    on_call(pagerduty, OnCall.for_hours(oncall_slack.dave.email))
    request = oncall_slack.request("email")

    post_interaction(client, click("approve", request.pk, user="UEVE"))
    after_ack.run()

    request.refresh_from_db()
    assert request.state == State.PENDING and not Approval.objects.filter(request=request).exists()
    assert replies_to(fake_slack, "eve") == ["You are not an approver for this request. Nothing changed."]
    refused = AuditEvent.objects.get(action="slack.action.refused")
    assert (refused.actor_name, refused.detail["reason"]) == (
        "eve",
        "You are not an approver for this request.",
    )


def test_after_a_shift_change_the_new_person_on_call_approves_and_the_old_one_cannot(
    oncall_slack, pagerduty, client, after_ack, fake_slack
):
    on_call(pagerduty, OnCall.for_hours(oncall_slack.eve.email))
    request = oncall_slack.request("email")

    on_call(pagerduty, OnCall.for_hours(oncall_slack.dave.email, started_hours_ago=0))  # the handover
    post_interaction(client, click("approve", request.pk, user="UEVE"))
    after_ack.run()

    request.refresh_from_db()
    assert request.state == State.PENDING
    assert replies_to(fake_slack, "eve") == ["You are not an approver for this request. Nothing changed."]

    post_interaction(client, click("approve", request.pk, user="UDAVE"))
    after_ack.run()
    request.refresh_from_db()
    assert request.state == State.APPROVED
    assert Approval.objects.get(request=request).approver == oncall_slack.dave


@pytest.mark.parametrize(("fault", "value"), [("status", 503), ("not_json", None), ("hang", 3)])
def test_a_provider_that_cannot_say_makes_nobody_an_approver_in_slack(
    oncall_slack, pagerduty, client, after_ack, fake_slack, fault, value
):
    on_call(pagerduty, OnCall.for_hours(oncall_slack.eve.email))
    request = oncall_slack.request("email")
    pagerduty.fail(fault, value, times=5)

    post_interaction(client, click("approve", request.pk, user="UEVE"))
    after_ack.run()

    request.refresh_from_db()
    assert request.state == State.PENDING and not Approval.objects.filter(request=request).exists()
    assert replies_to(fake_slack, "eve") == ["You are not an approver for this request. Nothing changed."]


def test_the_deny_modal_opens_without_asking_the_provider_and_is_withdrawn_from_someone_not_on_call(
    oncall_slack, pagerduty, client, after_ack, fake_slack
):
    on_call(pagerduty, OnCall.for_hours(oncall_slack.dave.email))
    request = oncall_slack.request("email")
    asked_before = len(pagerduty.calls)

    post_interaction(client, click("deny", request.pk, user="UEVE"))  # Veil does not know Eve's Slack yet
    [modal] = fake_slack.views
    assert len(pagerduty.calls) == asked_before, "inside Slack's 3-second window the provider is not asked"
    after_ack.run()

    assert modal.get("updates") == 1, "replaced by why she may not deny"
    assert (
        modal["view"]["blocks"][0]["text"]["text"]
        == "You are not an approver for this request. Nothing changed."
    )

    post_interaction(client, click("deny", request.pk, user="UDAVE"))  # on call: keeps the modal
    after_ack.run()
    assert [v.get("updates") for v in fake_slack.views] == [1, None]
    post_interaction(client, deny_submission(request.pk, "not during the freeze", user="UDAVE"))
    after_ack.run()
    request.refresh_from_db()
    assert (request.state, request.ended_by) == (State.DENIED, oncall_slack.dave)


def test_a_linked_person_not_on_call_sees_the_deny_modal_replaced(
    oncall_slack, pagerduty, client, after_ack, fake_slack
):
    on_call(pagerduty, OnCall.for_hours(oncall_slack.dave.email))
    request = oncall_slack.request("email")
    post_interaction(client, click("approve", request.pk, user="UEVE"))  # links Eve (and is refused)
    after_ack.run()
    assert linked_user("UEVE") == oncall_slack.eve

    post_interaction(client, click("deny", request.pk, user="UEVE"))
    after_ack.run()

    [modal] = fake_slack.views
    assert modal.get("updates") == 1
    assert (
        modal["view"]["blocks"][0]["text"]["text"]
        == "You are not an approver for this request. Nothing changed."
    )
    request.refresh_from_db()
    assert request.state == State.PENDING


def test_the_responder_on_call_is_approved_at_once_and_their_dm_says_which_shift(
    oncall_slack, pagerduty, fake_slack
):
    alice = oncall_slack.alice
    on_call(pagerduty, OnCall.for_hours(alice.email))

    request = oncall_slack.request("email", duration=timedelta(minutes=20))
    deliver_outbox()

    assert request.state == State.APPROVED
    [dm] = [m for m in fake_slack.in_channel("DALICE") if "is approved" in m.shown]
    assert "Approved at once: Alice Engineer is on call for PagerDuty schedule" in dm.shown
    assert "“Data platform primary” (PSCHED1), shift" in dm.shown


def test_a_schedule_name_from_the_provider_cannot_mention_anyone(oncall_slack, pagerduty, fake_slack):
    pagerduty.schedule(
        SCHEDULE, "<!channel> ops <https://evil.example|login>", OnCall.for_hours(oncall_slack.alice.email)
    )

    request = oncall_slack.request("email", duration=timedelta(minutes=20))
    deliver_outbox()

    assert request.state == State.APPROVED
    [dm] = [m for m in fake_slack.in_channel("DALICE") if "is approved" in m.shown]
    assert "&lt;!channel&gt; ops &lt;https://evil.example|login&gt;" in dm.shown
    assert "<!channel>" not in dm.shown and "<https://evil.example" not in dm.shown
