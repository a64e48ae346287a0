"""Approval in stages, through the services: the data owner, then security (tests.jitaccess.stages)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from audit.models import AuditEvent, Channel
from jitaccess.errors import NotAllowed
from jitaccess.models import AccessRequest, Approval, ApprovalStage, Notification
from jitaccess.selectors.approvers import can_approve, eligible_approvers
from jitaccess.services.requests import request_approve, request_deny
from jitaccess.states import InvalidTransition, State
from masking.models import Exemption
from tests.jitaccess.stages import DATA_OWNER, SECURITY, staged_world
from tests.oncall.conftest import SCHEDULE, fake_opsgenie, fake_pagerduty, oncall_world, providers  # noqa: F401
from tests.oncall.fake_oncall import OnCall

pytestmark = pytest.mark.django_db


def _asked(request, stage=None) -> set[str]:
    """Who the web inbox asked to approve (at `stage`, or at any)."""
    asked = Notification.objects.filter(request=request, kind="approval_needed", channel="web")
    if stage is not None:
        asked = asked.filter(stage=stage)
    return set(asked.values_list("recipient__username", flat=True))


def _approve(request, person):
    return request_approve(request_id=request.pk, approver=person, channel=Channel.WEB)


def _events(request) -> list[str]:
    return list(
        AuditEvent.objects.filter(target_type="request", target_id=str(request.pk))
        .order_by("pk")
        .values_list("action", flat=True)
    )


def test_a_policy_without_stages_is_one_stage_as_before(world):
    request = world.request("email")

    assert (request.stages, request.stage, request.stage_count, request.stage_label) == ([], 1, 1, "")
    assert request.approver_roles == ["pii-approvers"]
    _approve(request, world.bob)
    request.refresh_from_db()
    assert request.state == State.APPROVED
    assert Approval.objects.get(request=request).stage == 1
    assert "stage" not in AuditEvent.objects.get(action="request.approval_recorded").detail


def test_stage_two_is_asked_only_once_stage_one_is_complete_and_the_last_stage_grants(world):
    staged = staged_world(world)
    request = staged.request("email")

    assert [s["name"] for s in request.stages] == [DATA_OWNER, SECURITY]
    assert (request.stage, request.approver_roles, request.approvals_required) == (1, ["pii-approvers"], 1)
    assert _asked(request) == {"bob", "carol"}, "only the first stage's approvers"
    assert AuditEvent.objects.get(action="request.created").detail["stages"] == [DATA_OWNER, SECURITY]

    _approve(request, world.bob)

    request.refresh_from_db()
    assert (request.state, request.stage, request.stage_label) == (
        State.PENDING,
        2,
        "stage 2 of 2 (Security)",
    )
    assert request.approver_roles == ["security"]
    assert not Exemption.objects.filter(kind="grant").exists(), "no grant before the last stage"
    assert _asked(request, stage=2) == {"carol", "frank", "grace"}, "security, and not bob who approved"
    completed = AuditEvent.objects.get(action="request.stage_completed")
    assert completed.detail == {
        "stage": 1,
        "stage_name": DATA_OWNER,
        "approvers": [world.bob.canonical_subject],
        "next_stage": 2,
        "next_stage_name": SECURITY,
    }
    assert completed.actor_name == "Bob"

    _approve(request, staged.frank)

    request.refresh_from_db()
    assert request.state == State.APPROVED
    assert request.grant is not None
    assert [(a.approver.username, a.stage) for a in request.approvals.order_by("pk")] == [
        ("bob", 1),
        ("frank", 2),
    ]
    assert _events(request) == [
        "request.created",
        "request.approval_recorded",
        "request.stage_completed",
        "request.approval_recorded",
        "request.approved",
    ]
    recorded = AuditEvent.objects.filter(action="request.approval_recorded").order_by("pk")
    assert [(e.detail["stage"], e.detail["stage_name"]) for e in recorded] == [(1, DATA_OWNER), (2, SECURITY)]


def test_an_approver_of_a_later_stage_is_refused_while_an_earlier_one_waits(world):
    staged = staged_world(world)
    request = staged.request("email")

    with pytest.raises(
        NotAllowed, match=r"waits for stage 1 \(Data owner\); you decide at stage 2 \(Security\)"
    ):
        _approve(request, staged.frank)
    with pytest.raises(NotAllowed, match=r"waits for stage 1 \(Data owner\)"):
        request_deny(request_id=request.pk, approver=staged.frank, reason="no", channel=Channel.WEB)

    request.refresh_from_db()
    assert (request.state, request.stage, request.approvals.count()) == (State.PENDING, 1, 0)
    assert _events(request) == ["request.created"]
    assert not can_approve(request, staged.frank)


def test_who_approved_stage_one_does_not_count_for_stage_two(world):
    staged = staged_world(world)
    request = staged.request("email")
    _approve(request, world.carol)  # she is in both stages' roles
    request.refresh_from_db()

    assert world.carol not in eligible_approvers(request), "not asked, not offered the buttons"
    with pytest.raises(
        NotAllowed, match=r"You approved REQ-\d+ at stage 1 \(Data owner\); stage 2 \(Security\) needs"
    ):
        _approve(request, world.carol)

    request.refresh_from_db()
    assert (request.state, request.stage, request.approvals.count()) == (State.PENDING, 2, 1)
    assert _asked(request, stage=2) == {"frank", "grace"}


def test_an_approver_of_a_completed_stage_is_told_it_is_complete(world):
    staged = staged_world(world, carol_in_security=False)
    request = staged.request("email")
    _approve(request, world.bob)

    with pytest.raises(NotAllowed, match=r"Stage 1 \(Data owner\) of REQ-\d+, where you decide, is complete"):
        _approve(request, world.carol)
    assert Approval.objects.filter(request=request).count() == 1


def test_approving_twice_at_the_same_stage_counts_once(world):
    staged = staged_world(world, security_quorum=2)
    request = staged.request("email")
    _approve(request, world.bob)

    _approve(request, staged.frank)
    _approve(request, staged.frank)

    request.refresh_from_db()
    assert (request.state, request.stage) == (State.PENDING, 2)
    assert [a.approver.username for a in request.stage_approvals] == ["frank"]
    assert AuditEvent.objects.filter(action="request.approval_recorded").count() == 2

    _approve(request, staged.grace)
    request.refresh_from_db()
    assert request.state == State.APPROVED


def test_a_denial_at_a_later_stage_ends_the_request(world):
    staged = staged_world(world)
    request = staged.request("email")
    _approve(request, world.bob)

    request_deny(
        request_id=request.pk, approver=staged.grace, reason="not for this ticket", channel=Channel.WEB
    )

    request.refresh_from_db()
    assert (request.state, request.grant) == (State.DENIED, None)
    denied = AuditEvent.objects.get(action="request.denied")
    assert denied.detail == {"reason": "not for this ticket", "stage": 2, "stage_name": SECURITY}
    assert Notification.objects.filter(request=request, kind="denied", recipient=world.alice).exists()
    with pytest.raises(InvalidTransition, match="denied"):
        _approve(request, staged.frank)


def test_a_request_keeps_the_stages_it_was_made_with(world):
    staged = staged_world(world)
    request = staged.request("email")
    ApprovalStage.objects.filter(policy=world.policy, name=SECURITY).delete()

    _approve(request, world.bob)

    request.refresh_from_db()
    assert (request.state, request.stage_name) == (State.PENDING, SECURITY), (
        "the snapshot, not today's policy"
    )
    _approve(request, staged.grace)
    assert AccessRequest.objects.get(pk=request.pk).state == State.APPROVED


def test_a_stage_without_roles_is_decided_by_the_projects_approvers(world):
    from tests.factories import grant_project_perm

    staged = staged_world(world)
    ApprovalStage.objects.get(policy=world.policy, name=SECURITY).approver_roles.clear()
    grant_project_perm(world.dave, "approve_request", world.project)
    request = staged.request("email")
    _approve(request, world.bob)
    request.refresh_from_db()

    assert request.approver_roles == []
    assert _asked(request, stage=2) == {"dave"}
    with pytest.raises(NotAllowed, match="not an approver"):
        _approve(request, staged.frank)
    _approve(request, world.dave)
    assert AccessRequest.objects.get(pk=request.pk).state == State.APPROVED


# --- The pages ------------------------------------------------------------------------------------


def _page(client, person, url: str) -> str:
    client.force_login(person)
    response = client.get(url)
    assert response.status_code == 200
    return " ".join(response.content.decode().split())


def test_the_request_page_shows_each_stage_and_which_one_waits(world, client):
    staged = staged_world(world)
    request = staged.request("email")
    _approve(request, world.bob)

    page = _page(client, staged.frank, f"/requests/{request.pk}/")

    assert "Waiting for stage 2 of 2 (Security)</strong>: 0 of 1 approval" in page
    assert (
        '<strong>Data owner</strong>: 1 of pii-approvers · <span class="stage-status">complete</span>, '
        "approved by Bob" in page
    )
    assert '<strong>Security</strong>: 1 of security · <span class="stage-status">waiting</span>' in page
    assert "Who can approve at stage 2 of 2 (Security): Carol, Frank, Grace" in page
    assert "Stage complete</strong> (stage 1, Data owner; next: stage 2, Security) by Bob" in page
    assert "Approval recorded</strong> (stage 1, Data owner: 1 of 1 approval) by Bob" in page
    assert f'action="/requests/{request.pk}/approve/"' in page, "frank decides now"
    bob_page = _page(client, world.bob, f"/requests/{request.pk}/")
    assert f'action="/requests/{request.pk}/approve/"' not in bob_page, "bob approved stage 1"


def test_a_denial_at_stage_two_shows_on_the_page(world, client):
    staged = staged_world(world)
    request = staged.request("email")
    _approve(request, world.bob)
    request_deny(request_id=request.pk, approver=staged.grace, reason="no ticket", channel=Channel.WEB)

    page = _page(client, world.alice, f"/requests/{request.pk}/")

    assert '<span class="stage-status">denied</span>' in page
    assert "Denied</strong> at stage 2 (Security) by Grace" in page


def test_the_approval_queue_names_the_stage_and_approving_there_says_what_waits_next(world, client):
    staged = staged_world(world)
    request = staged.request("email")

    queue = _page(client, world.carol, "/approvals/")
    assert "<dt>Stage</dt><dd>Stage 1 of 2 (Data owner)</dd>" in queue
    assert request.ref in _page(client, world.bob, "/approvals/")
    assert request.ref not in _page(client, staged.frank, "/approvals/"), "security is not asked yet"

    response = client.post(f"/requests/{request.pk}/approve/", follow=True)  # as frank: refused
    assert response.status_code == 403
    assert "waits for stage 1 (Data owner)" in response.content.decode()

    client.force_login(world.carol)
    response = client.post(f"/requests/{request.pk}/approve/", follow=True)
    assert (
        f"Your approval of {request.ref} is recorded; it waits for stage 2 of 2 (Security): 0 of 1 approval."
        in response.content.decode()
    )
    assert request.ref in _page(client, staged.frank, "/approvals/")
    assert request.ref not in _page(client, world.carol, "/approvals/"), "carol approved stage 1"


# --- With an on-call schedule -------------------------------------------------------------------


def test_whoever_is_on_call_counts_at_the_stage_waiting_but_only_once(oncall_world, providers):  # noqa: F811
    staged = staged_world(oncall_world)
    pagerduty, _ = providers
    pagerduty.schedule(SCHEDULE, "Data platform primary", OnCall.for_hours(oncall_world.eve.email))
    request = staged.request("email", duration=timedelta(hours=2))

    _approve(request, oncall_world.eve)  # no role: the schedule makes her an approver of stage 1
    request.refresh_from_db()
    assert (request.state, request.stage) == (State.PENDING, 2)
    assert oncall_world.eve not in eligible_approvers(request), "she approved stage 1"
    with pytest.raises(NotAllowed, match=r"You approved REQ-\d+ at stage 1 \(Data owner\)"):
        _approve(request, oncall_world.eve)
    _approve(request, staged.frank)

    assert AccessRequest.objects.get(pk=request.pk).state == State.APPROVED


def test_the_responder_on_call_is_approved_at_once_whatever_the_stages(oncall_world, providers):  # noqa: F811
    staged = staged_world(oncall_world)
    pagerduty, _ = providers
    pagerduty.schedule(SCHEDULE, "Data platform primary", OnCall.for_hours(oncall_world.alice.email))

    request = staged.request("email", duration=timedelta(minutes=30))

    assert (request.state, request.stage, request.approvals.count()) == (State.APPROVED, 1, 0)
    assert "Approved at once" in request.oncall_note
