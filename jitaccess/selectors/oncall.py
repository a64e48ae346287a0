"""On-call approval: who is on call now for a request's schedule, as Veil people, and whether the
requester themselves is (the responder a policy may approve at once).

People are matched by their IdP-verified email, the way Slack accounts are: a PagerDuty user or
an Opsgenie username is an email, and only an active Veil user whose verified email it is counts.
The provider is asked at each call (`jitaccess.oncall`, never cached past a shift change); when it
cannot say, nobody is on call, so the rule adds no approver and approves nothing.
"""

from __future__ import annotations

import functools
import logging
import operator
from datetime import UTC, datetime, timedelta

from django.db.models import Q

from identity.models import User
from jitaccess.models import AccessRequest, ApprovalPolicy
from jitaccess.oncall import OnCallNow, OnCallProvider, OnCallUnavailable, Shift, on_call_now
from jitaccess.states import State

logger = logging.getLogger(__name__)


class OnCallPeople(list[User]):
    """The Veil people on call now for one schedule (a list, so it sits in an approver pool), with
    each one's shift and what the provider said (`roster`, None when it could not say)."""

    def __init__(self, people: list[User], shifts: dict[int, Shift], roster: OnCallNow | None) -> None:
        super().__init__(people)
        self.shifts = shifts
        self.roster = roster


def people_on_call(provider: str, schedule_id: str) -> OnCallPeople:
    """Ask the provider now; an empty list (and a warning in the log) when it cannot say."""
    try:
        roster = on_call_now(provider, schedule_id)
    except OnCallUnavailable as exc:
        logger.warning(
            "on-call schedule %s %s unavailable, so nobody counts as on call: %s", provider, schedule_id, exc
        )
        return OnCallPeople([], {}, None)
    by_email = {s.email: s for s in roster.shifts}
    people: list[User] = []
    shifts: dict[int, Shift] = {}
    if by_email:
        same_email = functools.reduce(operator.or_, (Q(email__iexact=email) for email in sorted(by_email)))
        for person in User.objects.filter(same_email, is_active=True, email_verified=True).order_by("pk"):
            shift = by_email.get(person.email.strip().lower())
            if shift is not None:
                people.append(person)
                shifts[person.pk] = shift
    return OnCallPeople(people, shifts, roster)


def request_on_call(
    request: AccessRequest, pools: dict[tuple[object, ...], list[User]] | None = None
) -> OnCallPeople:
    """The people on call now for the request's schedule (none when it names none). `pools`, as
    in `eligible_approvers`: one question to the provider per schedule for the whole call."""
    if not request.oncall_schedule_id:
        return OnCallPeople([], {}, None)
    key: tuple[object, ...] = ("oncall", request.oncall_provider, request.oncall_schedule_id)
    pools = {} if pools is None else pools
    if key not in pools:
        pools[key] = people_on_call(request.oncall_provider, request.oncall_schedule_id)
    people = pools[key]
    return people if isinstance(people, OnCallPeople) else OnCallPeople(people, {}, None)


def responder_note(
    *, policy: ApprovalPolicy | None, requester: User, duration: timedelta, for_agent: bool
) -> str:
    """When the policy approves the on-call responder's own request at once and the requester is
    on call now, within the policy's shorter maximum: the note saying which schedule and shift
    allowed it. "" otherwise (the request then waits for approvers as usual). Asks the provider."""
    if policy is None or not (policy.oncall_schedule_id and policy.oncall_responder_auto_approve):
        return ""
    limit = policy.oncall_responder_max_duration
    if for_agent or limit is None or duration > limit:
        return ""
    if not (requester.is_active and requester.email_verified and requester.email):
        return ""
    people = people_on_call(policy.oncall_provider, policy.oncall_schedule_id)
    shift = people.shifts.get(requester.pk)
    if shift is None or people.roster is None:
        return ""
    on_call = f"{schedule_label(people.roster)}, {shift_label(shift, people.roster)}"
    return f"Approved at once: {requester} is on call for {on_call}."


def approver_note(request: AccessRequest, approver: User, pools: dict[tuple[object, ...], list[User]]) -> str:
    """Which schedule and shift made `approver` an approver, when being on call did; else "".
    Reads what `can_approve` was told (in `pools`); never asks the provider again."""
    people = pools.get(("oncall", request.oncall_provider, request.oncall_schedule_id))
    if not isinstance(people, OnCallPeople):
        return ""
    shift = people.shifts.get(approver.pk)
    if shift is None or people.roster is None:
        return ""
    return f"on call for {schedule_label(people.roster)}, {shift_label(shift, people.roster)}"


def schedule_label(roster: OnCallNow) -> str:
    provider = OnCallProvider(roster.provider).label
    name = f"“{roster.schedule_name}” ({roster.schedule_id})" if roster.schedule_name else roster.schedule_id
    return f"{provider} schedule {name}"


def shift_label(shift: Shift, roster: OnCallNow) -> str:
    """The shift as far as the provider says; always with when it was checked."""
    checked = f"checked {_utc(roster.checked_at)}"
    if shift.start and shift.end:
        return f"shift {_utc(shift.start)} to {_utc(shift.end)} ({checked})"
    if shift.end:
        return f"shift until {_utc(shift.end)} ({checked})"
    return f"as {checked}"


def oncall_line(request: AccessRequest) -> str:
    """What the request's page and Slack message say about its on-call schedule: the shift that
    approved it at once, or (while pending) that whoever is on call may approve. Never asks the
    provider: rendering a message must not wait for it."""
    if request.oncall_note:
        return request.oncall_note
    if request.oncall_schedule_id and request.state == State.PENDING:
        provider = request.oncall_provider
        label = OnCallProvider(provider).label if provider in OnCallProvider.values else provider
        return f"Whoever is on call for {label} schedule {request.oncall_schedule_id} may approve too."
    return ""


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
