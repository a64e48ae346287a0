"""Every (state, action) pair, through the real services, and two approvers at once."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from django.db import connection
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from audit.models import AuditEvent, Channel
from audit.services import SYSTEM
from jitaccess.models import AccessRequest
from jitaccess.services.grants import grant_end, requests_sweep
from jitaccess.services.requests import request_approve, request_cancel, request_deny
from jitaccess.states import TRANSITIONS, Action, InvalidTransition, State, next_state
from masking.models import Exemption
from masking.services.policy import exemption_revoke

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
