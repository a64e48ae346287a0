"""Approval stages: a policy's stages as a request snapshots them, who decides at which stage, and
why someone may not decide now.

A request keeps the stages of its policy as they were when it was made (`AccessRequest.stages`),
and the stage waiting has its approver roles and quorum in `approver_roles` and
`approvals_required`, so `approvers.eligible_approvers` judges it as it judges a request without
stages. Someone who approved one stage never decides a later one (one approval per person and
request): stages are there so that different people look, one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from identity.models import User
from identity.selectors import users_in_roles
from jitaccess.models import AccessRequest, ApprovalPolicy
from jitaccess.selectors.approvers import people_with_perm
from jitaccess.states import State
from masking.permissions import ADMINISTER_POLICY, APPROVE_REQUEST


def policy_stages(policy: ApprovalPolicy | None) -> list[dict[str, Any]]:
    """The policy's stages in order, as a request keeps them: name, approver roles (sorted names)
    and approvals required. Empty for no policy, or a policy without stages."""
    if policy is None:
        return []
    return [
        {
            "name": stage.name,
            "approver_roles": sorted(role.name for role in stage.approver_roles.all()),
            "approvals_required": stage.approvals_required,
        }
        for stage in policy.stages.prefetch_related("approver_roles").order_by("position")
    ]


def stage_detail(request: AccessRequest) -> dict[str, Any]:
    """What audit events say about the stage waiting: nothing for a request without stages, so
    their events read as they always have."""
    return {"stage": request.stage, "stage_name": request.stage_name} if request.stages else {}


@dataclass(frozen=True)
class StageProgress:
    """One stage of a request as its page shows it."""

    number: int
    name: str
    approver_roles: tuple[str, ...]
    approvals_required: int
    approvers: tuple[str, ...]  # who approved at this stage, in order
    status: str  # complete, waiting, denied, not decided, not asked yet, not reached


def stage_progress(request: AccessRequest) -> list[StageProgress]:
    """Each stage of the request and where it stands; empty for a request without stages."""
    if not request.stages:
        return []
    by_stage: dict[int, list[str]] = {}
    for approval in request.approvals.select_related("approver"):
        by_stage.setdefault(approval.stage, []).append(str(approval.approver))
    progress = []
    for number, stage in enumerate(request.stages, start=1):
        given = by_stage.get(number, [])
        if number < request.stage or len(given) >= int(stage["approvals_required"]):
            status = "complete"  # a stage with its quorum either opened the next one or granted
        elif number == request.stage:
            status = {State.PENDING: "waiting", State.DENIED: "denied"}.get(
                State(request.state), "not decided"
            )
        else:
            status = "not asked yet" if request.state == State.PENDING else "not reached"
        progress.append(
            StageProgress(
                number=number,
                name=str(stage["name"]),
                approver_roles=tuple(stage["approver_roles"]),
                approvals_required=int(stage["approvals_required"]),
                approvers=tuple(given),
                status=status,
            )
        )
    return progress


def stage_refusal(request: AccessRequest, user: User) -> str:
    """Why `user`, who may not decide the request now, may not, when its stages explain it: they
    approved an earlier stage, or they decide at another stage than the one waiting. "" otherwise
    (the caller then says they are not an approver)."""
    if not request.stages:
        return ""
    waiting = f"stage {request.stage} ({request.stage_name})"
    earlier = next(
        (
            a
            for a in request.approvals.all()
            if a.approver_subject == user.canonical_subject and a.stage < request.stage
        ),
        None,
    )
    if earlier is not None:
        return (
            f"You approved {request.ref} at stage {earlier.stage} ({_name(request, earlier.stage)}); "
            f"{waiting} needs someone else."
        )
    for number in range(1, request.stage_count + 1):
        if number == request.stage or not _decides_at(request, number, user):
            continue
        theirs = f"stage {number} ({_name(request, number)})"
        if number > request.stage:
            return (
                f"{request.ref} waits for {waiting}; you decide at {theirs} and will be asked when it opens."
            )
        return (
            f"Stage {number} ({_name(request, number)}) of {request.ref}, where you decide, is complete; "
            f"it now waits for {waiting}."
        )
    return ""


def _name(request: AccessRequest, number: int) -> str:
    return str(request.stages[number - 1]["name"])


def _decides_at(request: AccessRequest, number: int, user: User) -> bool:
    """Whether `user` is among the approvers of stage `number` (their roles; without roles, the
    people `eligible_approvers` would fall back to)."""
    roles = request.stages[number - 1]["approver_roles"]
    if roles:
        return users_in_roles(roles).filter(pk=user.pk).exists()
    perm = APPROVE_REQUEST if request.policy_id else ADMINISTER_POLICY
    return people_with_perm(request.project, perm).filter(pk=user.pk).exists()
