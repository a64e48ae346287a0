"""Every (state, action) pair, through the real services, and two approvers at once; the same for
a policy in two stages (the data owner, then security: tests.jitaccess.stages)."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from audit.models import AuditEvent, Channel
from audit.services import SYSTEM
from jitaccess.errors import NotAllowed
from jitaccess.models import AccessRequest, Approval, Notification
from jitaccess.services.grants import grant_end, requests_sweep
from jitaccess.services.requests import request_approve, request_cancel, request_deny
from jitaccess.states import (
    TRANSITIONS,
    Action,
    ApprovalStep,
    InvalidTransition,
    State,
    approval_step,
    next_state,
)
from masking.models import Exemption
from masking.services.policy import exemption_revoke
from tests.jitaccess.stages import staged_world

ALL_PAIRS = [(s, a) for s in State for a in Action]


@pytest.mark.parametrize(("state", "action"), ALL_PAIRS)
def test_the_transition_table_allows_exactly_the_documented_pairs(state, action):
    if (state, action) in TRANSITIONS:
        assert next_state(state, action) == TRANSITIONS[(state, action)]
    else:
        with pytest.raises(InvalidTransition, match=re.escape(State(state).label.lower())):
            next_state(state, action)


class RequestLifecycle(RuleBasedStateMachine):
    """Drives one request per example through the services; the model is the transition table."""

    world = None  # set by the test below

    @initialize()
    def new_request(self):
        self.request = self.world.request("email")
        self.expected = State.PENDING

    def _attempt(self, action: str, call) -> None:
        allowed = (self.expected, action) in TRANSITIONS
        try:
            call()
        except InvalidTransition as exc:
            assert not allowed, f"{action} wrongly refused in {self.expected}"
            assert exc.state == self.expected
            return
        assert allowed, f"{action} wrongly accepted in {self.expected}"
        self.expected = TRANSITIONS[(self.expected, action)]

    @rule()
    def approve(self):
        self._attempt(
            Action.APPROVE,
            lambda: request_approve(request_id=self.request.pk, approver=self.world.bob, channel=Channel.WEB),
        )

    @rule()
    def deny(self):
        self._attempt(
            Action.DENY,
            lambda: request_deny(
                request_id=self.request.pk, approver=self.world.carol, reason="no", channel=Channel.WEB
            ),
        )

    @rule()
    def cancel(self):
        self._attempt(
            Action.CANCEL,
            lambda: request_cancel(
                request_id=self.request.pk, requester=self.world.alice, channel=Channel.WEB
            ),
        )

    @rule()
    def revoke(self):
        self._attempt(
            Action.REVOKE,
            lambda: grant_end(
                request_id=self.request.pk, user=self.world.carol, action=Action.REVOKE, channel=Channel.WEB
            ),
        )

    @rule()
    def relinquish(self):
        self._attempt(
            Action.RELINQUISH,
            lambda: grant_end(
                request_id=self.request.pk,
                user=self.world.alice,
                action=Action.RELINQUISH,
                channel=Channel.WEB,
            ),
        )

    @rule()
    def time_passes_past_the_pending_window(self):
        request = AccessRequest.objects.get(pk=self.request.pk)
        requests_sweep(now=request.pending_until + timedelta(seconds=1))
        if self.expected == State.PENDING:
            self.expected = State.TIMED_OUT
        elif self.expected == State.APPROVED and request.expires_at <= request.pending_until + timedelta(
            seconds=1
        ):
            self.expected = State.EXPIRED

    @rule()
    def time_passes_past_the_expiry(self):
        request = AccessRequest.objects.get(pk=self.request.pk)
        if request.expires_at is None:
            return
        requests_sweep(now=request.expires_at)
        if self.expected == State.APPROVED:
            self.expected = State.EXPIRED

    def teardown(self):
        """The next example starts with nothing unmasked (a live grant would make its request moot)."""
        for grant in Exemption.objects.filter(kind="grant", revoked_at__isnull=True):
            exemption_revoke(exemption=grant, actor=SYSTEM, channel=Channel.SYSTEM)

    @invariant()
    def the_stored_state_is_the_models(self):
        if hasattr(self, "request"):
            assert AccessRequest.objects.get(pk=self.request.pk).state == self.expected

    @invariant()
    def a_grant_exists_exactly_when_the_request_was_approved(self):
        if hasattr(self, "request"):
            request = AccessRequest.objects.get(pk=self.request.pk)
            assert (request.grant_id is not None) == (
                request.decided_at is not None and not request.deny_reason
            )


@pytest.mark.django_db
def test_every_state_and_action_through_the_services(world):
    world.policy.approver_roles.first().users.add(world.carol)
    RequestLifecycle.world = world
    run_state_machine_as_test(
        RequestLifecycle,
        settings=settings(
            max_examples=25,
            stateful_step_count=8,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )


@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_once_produce_one_grant(world):
    request = world.request("email")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def approve(approver) -> None:
        barrier.wait()
        try:
            request_approve(request_id=request.pk, approver=approver, channel=Channel.WEB)
            outcomes.append("approved")
        except InvalidTransition as exc:
            outcomes.append(f"refused: {exc.state}")
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(p,)) for p in (world.bob, world.carol)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(outcomes) == ["approved", "refused: approved"], "the second sees the first's decision"
    assert Exemption.objects.filter(kind="grant").count() == 1
    assert AuditEvent.objects.filter(action="request.approved").count() == 1
    assert AccessRequest.objects.get(pk=request.pk).state == State.APPROVED


@given(
    required=st.integers(min_value=1, max_value=5),
    approvals=st.integers(min_value=0, max_value=6),
    stage_count=st.integers(min_value=1, max_value=4),
    data=st.data(),
)
def test_an_approval_waits_opens_the_next_stage_or_grants(required, approvals, stage_count, data):
    stage = data.draw(st.integers(min_value=1, max_value=stage_count))
    step = approval_step(approvals=approvals, required=required, stage=stage, stage_count=stage_count)
    if approvals < required:
        assert step == ApprovalStep.WAIT
    elif stage < stage_count:
        assert step == ApprovalStep.NEXT_STAGE
    else:
        assert step == ApprovalStep.GRANT


def test_a_stage_that_does_not_exist_is_refused():
    with pytest.raises(ValueError, match="stage 3 of 2"):
        approval_step(approvals=1, required=1, stage=3, stage_count=2)


# Stage 1 "Data owner": bob, carol (1 approval). Stage 2 "Security": carol, frank, grace (2).
STAGE_ROLES = {1: {"bob", "carol"}, 2: {"carol", "frank", "grace"}}
STAGE_QUORUM = {1: 1, 2: 2}
PEOPLE = ("alice", "bob", "carol", "frank", "grace", "eve")


class StagedRequestLifecycle(RuleBasedStateMachine):
    """One request per example under a two-stage policy, clicked at by anyone in any order. The
    model: the transition table, the stage waiting and who approved at which stage."""

    staged = None  # set by the test below

    @initialize()
    def new_request(self):
        self.request = self.staged.request("email")
        self.expected = State.PENDING
        self.stage = 1
        self.approved_at: dict[str, int] = {}  # username -> stage

    def _person(self, name: str):
        world = self.staged.world
        return getattr(self.staged, name, None) or getattr(world, name)

    def _may_decide(self, name: str) -> bool:
        """An approver of the stage waiting who approved no earlier stage (one who approved this
        one may still deny, as without stages)."""
        return name in STAGE_ROLES[self.stage] and self.approved_at.get(name, self.stage) == self.stage

    @rule(name=st.sampled_from(PEOPLE))
    def approve(self, name):
        try:
            request_approve(request_id=self.request.pk, approver=self._person(name), channel=Channel.WEB)
        except InvalidTransition as exc:
            assert self.expected != State.PENDING and exc.state == self.expected
            return
        except NotAllowed:
            assert self.expected == State.PENDING and not self._may_decide(name), f"{name} wrongly refused"
            return
        assert self.expected == State.PENDING, f"approve wrongly accepted in {self.expected}"
        if name in self.approved_at:
            assert self.approved_at[name] == self.stage, "a repeat only at the same stage, adding nothing"
            return
        assert self._may_decide(name), f"{name} wrongly counted at stage {self.stage}"
        self.approved_at[name] = self.stage
        if sum(1 for s in self.approved_at.values() if s == self.stage) >= STAGE_QUORUM[self.stage]:
            if self.stage < len(STAGE_ROLES):
                self.stage += 1
            else:
                self.expected = State.APPROVED

    @rule(name=st.sampled_from(PEOPLE))
    def deny(self, name):
        try:
            request_deny(
                request_id=self.request.pk, approver=self._person(name), reason="no", channel=Channel.WEB
            )
        except InvalidTransition as exc:
            assert self.expected != State.PENDING and exc.state == self.expected
            return
        except NotAllowed:
            assert self.expected == State.PENDING and not self._may_decide(name)
            return
        assert self.expected == State.PENDING and self._may_decide(name), f"{name} wrongly denied"
        self.expected = State.DENIED

    @rule()
    def cancel(self):
        try:
            request_cancel(request_id=self.request.pk, requester=self.staged.world.alice, channel=Channel.WEB)
        except InvalidTransition:
            assert self.expected != State.PENDING
            return
        assert self.expected == State.PENDING
        self.expected = State.CANCELLED

    @rule()
    def time_passes_past_the_pending_window(self):
        request = AccessRequest.objects.get(pk=self.request.pk)
        if self.expected == State.PENDING:
            requests_sweep(now=request.pending_until + timedelta(seconds=1))
            self.expected = State.TIMED_OUT

    def teardown(self):
        for grant in Exemption.objects.filter(kind="grant", revoked_at__isnull=True):
            exemption_revoke(exemption=grant, actor=SYSTEM, channel=Channel.SYSTEM)

    @invariant()
    def the_stored_state_and_stage_are_the_models(self):
        if hasattr(self, "request"):
            request = AccessRequest.objects.get(pk=self.request.pk)
            assert (request.state, request.stage) == (self.expected, self.stage)
            assert request.approvals_required == STAGE_QUORUM[self.stage]

    @invariant()
    def each_approval_was_given_by_an_approver_of_the_stage_it_counts_for(self):
        if hasattr(self, "request"):
            stored = dict(
                Approval.objects.filter(request=self.request).values_list("approver__username", "stage")
            )
            assert stored == self.approved_at
            assert all(name in STAGE_ROLES[stage] for name, stage in stored.items())
            for stage, quorum in STAGE_QUORUM.items():
                assert sum(1 for s in stored.values() if s == stage) <= quorum

    @invariant()
    def only_opened_stages_were_asked(self):
        if hasattr(self, "request"):
            asked = Notification.objects.filter(request=self.request, kind="approval_needed", channel="web")
            by_stage = {
                stage: set(asked.filter(stage=stage).values_list("recipient__username", flat=True))
                for stage in STAGE_ROLES
            }
            assert by_stage[1] == STAGE_ROLES[1]
            first_stage = {name for name, stage in self.approved_at.items() if stage == 1}
            # Stage 2's approvers, but not who approved stage 1, once it opened; nobody before.
            assert by_stage[2] == (STAGE_ROLES[2] - first_stage if self.stage == 2 else set())
            assert not ({"frank", "grace"} & by_stage[1]), "security is never asked at the data owner's stage"

    @invariant()
    def a_grant_exists_exactly_when_the_last_stage_approved(self):
        if hasattr(self, "request"):
            request = AccessRequest.objects.get(pk=self.request.pk)
            assert (request.grant_id is not None) == (self.expected == State.APPROVED)


@pytest.mark.django_db
def test_every_click_on_a_request_in_stages_through_the_services(world):
    StagedRequestLifecycle.staged = staged_world(world, security_quorum=2)
    run_state_machine_as_test(
        StagedRequestLifecycle,
        settings=settings(
            max_examples=25,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )


def _at_once(*calls) -> list[str]:
    """Run the calls on threads released together; each outcome: "ok", or the refusal's words."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = []

    def run(call) -> None:
        barrier.wait()
        try:
            call()
            outcomes.append("ok")
        except (InvalidTransition, NotAllowed) as exc:
            outcomes.append(f"refused: {exc}")
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def _approving(request, person):
    return lambda: request_approve(request_id=request.pk, approver=person, channel=Channel.WEB)


@pytest.mark.django_db(transaction=True)
def test_two_approvers_completing_a_stage_at_once_open_the_next_stage_once(world):
    staged = staged_world(world, carol_in_security=False)
    request = staged.request("email")

    outcomes = _at_once(_approving(request, world.bob), _approving(request, world.carol))

    assert outcomes[0] == "ok"
    assert "Stage 1 (Data owner)" in outcomes[1] and "is complete" in outcomes[1], "the second is told"
    request.refresh_from_db()
    assert (request.state, request.stage, request.approvals.count()) == (State.PENDING, 2, 1)
    assert AuditEvent.objects.filter(action="request.stage_completed").count() == 1
    asked = Notification.objects.filter(request=request, kind="approval_needed", channel="web", stage=2)
    assert sorted(asked.values_list("recipient__username", flat=True)) == ["frank", "grace"]


@pytest.mark.django_db(transaction=True)
def test_two_approvers_of_the_last_stage_at_once_produce_one_grant(world):
    staged = staged_world(world, carol_in_security=False)
    request = staged.request("email")
    request_approve(request_id=request.pk, approver=world.bob, channel=Channel.WEB)

    outcomes = _at_once(_approving(request, staged.frank), _approving(request, staged.grace))

    assert outcomes == ["ok", "refused: cannot approve: the request is approved (grant active)"]
    assert Exemption.objects.filter(kind="grant").count() == 1
    assert AuditEvent.objects.filter(action="request.approved").count() == 1
    request.refresh_from_db()
    assert (request.state, request.stage, request.approvals.count()) == (State.APPROVED, 2, 2)
