"""The request lifecycle as an explicit state machine. Pure: no ORM.

    pending --approve (quorum reached)--> approved --expire------> expired
       |                                     |-----revoke------> revoked
       |                                     '-----relinquish--> relinquished
       |--deny--> denied
       |--cancel--> cancelled
       '--time_out--> timed_out

`approve` below quorum records an approval and leaves the request pending. Every other pair is
refused with the request's current state, so a late click on a decided request changes nothing.

A policy may ask for approval in ordered stages (the data owner, then security). The request stays
`pending` through them; within it, `approval_step` says what an approval does:

    pending, stage k of n --approve (below stage k's quorum)---------> pending, stage k (wait)
                          --approve (stage k's quorum, k < n)--------> pending, stage k+1 (next_stage)
                          --approve (stage n's quorum)---------------> approved (grant)
                          --deny / cancel / time_out-----------------> as above, at any stage

A request without stages is one stage of one (n = 1): the first and last lines, as before.
"""

from __future__ import annotations

from django.db import models


class State(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved (grant active)"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"
    RELINQUISHED = "relinquished", "Relinquished"
    DENIED = "denied", "Denied"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"


class Action(models.TextChoices):
    APPROVE = "approve", "Approve"
    DENY = "deny", "Deny"
    CANCEL = "cancel", "Cancel"
    TIME_OUT = "time_out", "Time out"
    EXPIRE = "expire", "Expire"
    REVOKE = "revoke", "Revoke"
    RELINQUISH = "relinquish", "Relinquish"


TRANSITIONS: dict[tuple[str, str], str] = {
    (State.PENDING, Action.APPROVE): State.APPROVED,
    (State.PENDING, Action.DENY): State.DENIED,
    (State.PENDING, Action.CANCEL): State.CANCELLED,
    (State.PENDING, Action.TIME_OUT): State.TIMED_OUT,
    (State.APPROVED, Action.EXPIRE): State.EXPIRED,
    (State.APPROVED, Action.REVOKE): State.REVOKED,
    (State.APPROVED, Action.RELINQUISH): State.RELINQUISHED,
}
LIVE_STATES = frozenset({State.PENDING, State.APPROVED})  # not decided yet, or a grant not ended
FINAL_STATES = frozenset(State) - LIVE_STATES


class InvalidTransition(Exception):
    """The action does not apply in the request's current state (which the message names)."""

    def __init__(self, state: str, action: str) -> None:
        super().__init__(
            f"cannot {Action(action).label.lower()}: the request is {State(state).label.lower()}"
        )
        self.state = state
        self.action = action


def next_state(state: str, action: str) -> str:
    """The state after `action`, or InvalidTransition naming the current state."""
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise InvalidTransition(state, action) from None


class ApprovalStep(models.TextChoices):
    """What an approval that is counted does to a pending request (see the module docstring)."""

    WAIT = "wait", "Wait for more approvals at this stage"
    NEXT_STAGE = "next_stage", "Open the next stage"
    GRANT = "grant", "Approve: every stage is complete"


def approval_step(*, approvals: int, required: int, stage: int, stage_count: int) -> ApprovalStep:
    """What a pending request does once stage `stage` (of `stage_count`, from 1) has `approvals` of
    the `required` it needs. Pure; the services call it under the request's row lock."""
    if not 1 <= stage <= stage_count:
        raise ValueError(f"stage {stage} of {stage_count} does not exist")
    if approvals < required:
        return ApprovalStep.WAIT
    return ApprovalStep.NEXT_STAGE if stage < stage_count else ApprovalStep.GRANT
