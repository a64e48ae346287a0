"""On-call approval end to end through the services and the web pages, against fake PagerDuty and
Opsgenie on loopback: whoever is on call now counts as an approver, the responder on call is
approved at once for a shorter while (with a note of the schedule and shift), and a provider
that cannot say (an error, a body that is not its JSON, a timeout) approves nothing and adds no
approver."""

from __future__ import annotations

from datetime import timedelta

import pytest

from audit.models import AuditEvent, Channel
from jitaccess.errors import NotAllowed
from jitaccess.models import Approval
from jitaccess.oncall import OnCallProvider
from jitaccess.selectors.approvers import eligible_approvers
from jitaccess.services.requests import request_approve
from jitaccess.states import State
from tests.oncall.conftest import OPSGENIE_SCHEDULE, SCHEDULE
from tests.oncall.fake_oncall import OnCall

pytestmark = pytest.mark.django_db

UNTRUSTED_ANSWERS = [
    pytest.param("status", 500, id="500"),
    pytest.param("status", 401, id="401"),
    pytest.param("not_json", None, id="malformed-json"),
    pytest.param("wrong_shape", None, id="wrong-shape"),
    pytest.param("hang", 3, id="timeout"),
]


def on_call(providers, *people: OnCall, name: str = "Data platform primary") -> None:
    pagerduty, _ = providers
    pagerduty.schedule(SCHEDULE, name, *people)


def unchanged(request) -> bool:
    request.refresh_from_db()
    return request.state == State.PENDING and not Approval.objects.filter(request=request).exists()


def test_whoever_is_on_call_now_counts_as_an_approver(oncall_world, providers):
    eve = oncall_world.eve  # no role, no permission: only the schedule makes her an approver
    shift = OnCall.for_hours(eve.email)
    on_call(providers, shift)
    request = oncall_world.request("email", duration=timedelta(hours=2))
    assert request.state == State.PENDING
    assert eve in eligible_approvers(request)

    request_approve(request_id=request.pk, approver=eve, channel=Channel.WEB)

    request.refresh_from_db()
    assert request.state == State.APPROVED
    recorded = AuditEvent.objects.get(action="request.approval_recorded")
    assert recorded.actor_name == str(eve)
    note = recorded.detail["oncall"]
    assert "PagerDuty schedule “Data platform primary” (PSCHED1)" in note
    assert f"shift {shift.start:%Y-%m-%d %H:%M} UTC to {shift.end:%Y-%m-%d %H:%M} UTC" in note


def test_someone_not_on_call_is_refused_as_today(oncall_world, providers):
    on_call(providers, OnCall.for_hours(oncall_world.dave.email))
    request = oncall_world.request("email", duration=timedelta(hours=2))

    with pytest.raises(NotAllowed, match="You are not an approver for this request"):
        request_approve(request_id=request.pk, approver=oncall_world.eve, channel=Channel.WEB)
    assert unchanged(request)


def test_a_shift_change_between_request_and_click_counts_the_new_person_only(oncall_world, providers):
    pagerduty, _ = providers
    on_call(providers, OnCall.for_hours(oncall_world.eve.email))
    request = oncall_world.request("email", duration=timedelta(hours=2))
    assert oncall_world.eve in eligible_approvers(request)

    on_call(providers, OnCall.for_hours(oncall_world.dave.email, started_hours_ago=0))  # the handover

    with pytest.raises(NotAllowed):
        request_approve(request_id=request.pk, approver=oncall_world.eve, channel=Channel.WEB)
    assert unchanged(request)
    request_approve(request_id=request.pk, approver=oncall_world.dave, channel=Channel.WEB)
    request.refresh_from_db()
    assert request.state == State.APPROVED
    assert len(pagerduty.calls) >= 3, "the schedule is read at every decision, never cached"


@pytest.mark.parametrize(("fault", "value"), UNTRUSTED_ANSWERS)
def test_a_provider_that_cannot_say_adds_no_approver(oncall_world, providers, fault, value):
    pagerduty, _ = providers
    on_call(providers, OnCall.for_hours(oncall_world.eve.email))
    request = oncall_world.request("email", duration=timedelta(hours=2))
    pagerduty.fail(fault, value)

    with pytest.raises(NotAllowed, match="You are not an approver"):
        request_approve(request_id=request.pk, approver=oncall_world.eve, channel=Channel.WEB)
    assert unchanged(request)
    # The approvers the roles name still decide.
    request_approve(request_id=request.pk, approver=oncall_world.bob, channel=Channel.WEB)
    request.refresh_from_db()
    assert request.state == State.APPROVED


def test_the_responder_on_call_is_approved_at_once_for_the_shorter_while_with_a_note(oncall_world, providers):
    alice = oncall_world.alice
    shift = OnCall.for_hours(alice.email, started_hours_ago=1, hours=12)
    on_call(providers, shift)

    request = oncall_world.request("email", duration=timedelta(minutes=45))

    assert request.state == State.APPROVED
    assert request.expires_at - request.starts_at == timedelta(minutes=45)
    assert request.oncall_note == (
        f"Approved at once: {alice} is on call for PagerDuty schedule “Data platform primary” (PSCHED1), "
        f"shift {shift.start:%Y-%m-%d %H:%M} UTC to {shift.end:%Y-%m-%d %H:%M} UTC "
        f"(checked {request.created_at:%Y-%m-%d %H:%M} UTC)."
    )
    approved = AuditEvent.objects.get(action="request.approved")
    assert (approved.detail["auto_approved"], approved.detail["oncall"]) == (True, request.oncall_note)
    assert not Approval.objects.filter(request=request).exists(), "approved by the policy, not a person"


def test_the_responder_asking_for_longer_than_the_shorter_maximum_waits_for_approvers(
    oncall_world, providers
):
    on_call(providers, OnCall.for_hours(oncall_world.alice.email))

    request = oncall_world.request("email", duration=timedelta(hours=2))  # the policy's maximum: 1h

    assert request.state == State.PENDING
    assert request.oncall_note == ""


def test_the_responder_is_not_approved_at_once_when_the_policy_does_not_say_so(oncall_world, providers):
    oncall_world.policy.oncall_responder_auto_approve = False
    oncall_world.policy.save()
    on_call(providers, OnCall.for_hours(oncall_world.alice.email))

    request = oncall_world.request("email", duration=timedelta(minutes=30))

    assert request.state == State.PENDING
    with pytest.raises(NotAllowed, match="You cannot approve your own request"):
        request_approve(request_id=request.pk, approver=oncall_world.alice, channel=Channel.WEB)


@pytest.mark.parametrize(("fault", "value"), UNTRUSTED_ANSWERS)
def test_a_provider_that_cannot_say_never_approves_the_responder(oncall_world, providers, fault, value):
    pagerduty, _ = providers
    on_call(providers, OnCall.for_hours(oncall_world.alice.email))
    pagerduty.fail(fault, value)

    request = oncall_world.request("email", duration=timedelta(minutes=30))

    assert request.state == State.PENDING
    assert (request.oncall_note, request.grant) == ("", None)


def test_someone_on_call_whose_email_is_not_verified_does_not_count(oncall_world, providers):
    eve = oncall_world.eve
    eve.email_verified = False
    eve.save(update_fields=["email_verified"])
    on_call(providers, OnCall.for_hours(eve.email))
    request = oncall_world.request("email", duration=timedelta(hours=2))

    with pytest.raises(NotAllowed):
        request_approve(request_id=request.pk, approver=eve, channel=Channel.WEB)
    assert unchanged(request)


def test_an_opsgenie_schedule_works_the_same_way(oncall_world, providers):
    _, opsgenie = providers
    oncall_world.policy.oncall_provider = OnCallProvider.OPSGENIE
    oncall_world.policy.oncall_schedule_id = OPSGENIE_SCHEDULE
    oncall_world.policy.save()
    opsgenie.schedule(OPSGENIE_SCHEDULE, "DBA on call", OnCall(oncall_world.eve.email))
    request = oncall_world.request("email", duration=timedelta(hours=2))

    request_approve(request_id=request.pk, approver=oncall_world.eve, channel=Channel.SLACK)

    request.refresh_from_db()
    assert request.state == State.APPROVED
    note = AuditEvent.objects.get(action="request.approval_recorded").detail["oncall"]
    assert note.startswith(f"on call for Opsgenie schedule “DBA on call” ({OPSGENIE_SCHEDULE}), as checked")

    opsgenie.schedule(OPSGENIE_SCHEDULE, "DBA on call", OnCall(oncall_world.alice.email))
    responder = oncall_world.request("phone", duration=timedelta(minutes=30))
    assert responder.state == State.APPROVED
    assert "Opsgenie schedule “DBA on call”" in responder.oncall_note


def test_the_request_keeps_the_schedule_it_was_made_under(oncall_world, providers):
    """Like its approver roles: a policy edited later does not change who may approve."""
    on_call(providers, OnCall.for_hours(oncall_world.eve.email))
    request = oncall_world.request("email", duration=timedelta(hours=2))
    oncall_world.policy.oncall_schedule_id = "PELSEWHERE"
    oncall_world.policy.save()

    request_approve(request_id=request.pk, approver=oncall_world.eve, channel=Channel.WEB)

    request.refresh_from_db()
    assert (request.state, request.oncall_schedule_id) == (State.APPROVED, SCHEDULE)


# --- The web pages -----------------------------------------------------------------------------


def test_on_call_person_finds_the_request_in_the_queue_and_approves_it_on_the_web(
    oncall_world, providers, client
):
    eve = oncall_world.eve
    on_call(providers, OnCall.for_hours(eve.email))
    request = oncall_world.request("email", duration=timedelta(hours=2))
    client.force_login(eve)

    assert f"/requests/{request.pk}/" in client.get("/approvals/").content.decode()
    page = client.get(f"/requests/{request.pk}/").content.decode()
    assert "Whoever is on call for PagerDuty schedule PSCHED1 may approve too." in page
    assert f'action="/requests/{request.pk}/approve/"' in page

    page = client.post(f"/requests/{request.pk}/approve/", follow=True).content.decode()

    request.refresh_from_db()
    assert request.state == State.APPROVED
    assert "as on call for PagerDuty schedule “Data platform primary” (PSCHED1)" in page


def test_someone_not_on_call_does_not_see_the_request(oncall_world, providers, client):
    on_call(providers, OnCall.for_hours(oncall_world.dave.email))
    request = oncall_world.request("email", duration=timedelta(hours=2))
    client.force_login(oncall_world.eve)

    assert client.get(f"/requests/{request.pk}/").status_code == 404
    assert client.post(f"/requests/{request.pk}/approve/").status_code == 404
    assert f"/requests/{request.pk}/" not in client.get("/approvals/").content.decode()
    assert unchanged(request)


def test_the_page_of_a_request_approved_at_once_shows_the_shift(oncall_world, providers, client):
    on_call(providers, OnCall.for_hours(oncall_world.alice.email))
    request = oncall_world.request("email", duration=timedelta(minutes=30))
    client.force_login(oncall_world.alice)

    page = client.get(f"/requests/{request.pk}/").content.decode()

    assert "Approved automatically" in page
    assert "is on call for PagerDuty schedule “Data platform primary” (PSCHED1), shift" in page
