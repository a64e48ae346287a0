"""Which approval policy a request would fall under and who would be asked, before it is sent: the
request form shows it as the person ticks columns and picks a duration.

It runs what `services.requests.request_create` runs at submission (`match_approval_policy` over
`scopes.policy_variables`, `stages.policy_stages`, `approvers.eligible_approvers`,
`scopes.limit_under` and `scopes.longest_allowed`), so the preview and the request agree. It never
asks an on-call provider: a preview is asked at every tick, and must neither wait for the provider
nor spend its rate limit, so whoever is on call is named by their schedule, not as people.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from identity.models import User
from jitaccess.errors import RequestError
from jitaccess.formatting import duration_label
from jitaccess.models import AccessRequest, ApprovalPolicy
from jitaccess.policy.matching import match_approval_policy
from jitaccess.selectors.approvers import ApproverPools, eligible_approvers
from jitaccess.selectors.oncall import oncall_line
from jitaccess.selectors.scopes import (
    DurationLimit,
    Scope,
    access_settings,
    check_something_masked,
    highest_level,
    limit_under,
    longest_allowed,
    policy_variables,
    scope_columns,
)
from jitaccess.selectors.stages import policy_stages

PEOPLE_NAMED = 5  # up to this many approvers are named; more are counted
ANY_DURATION = timedelta(hours=1)  # what matching reads when no policy's condition reads the duration


@dataclass(frozen=True)
class PreviewStage:
    """Who is asked at one stage (a policy without stages has one, named "")."""

    name: str
    roles: tuple[str, ...]  # empty: people with the project permission (see `eligible_approvers`)
    source: str  # whom the approvers come from, in words: "the role “pii-approvers”"
    approvals_required: int
    people: tuple[str, ...]  # who may approve, when PEOPLE_NAMED or fewer; else empty
    people_count: int


@dataclass(frozen=True)
class ApprovalPreview:
    policy_title: str  # "" when no policy matches: a project administrator approves
    approved_at_once: bool
    stages: tuple[PreviewStage, ...]  # in the order they are asked; empty when approved at once
    oncall: str  # that whoever is on call for the policy's schedule may approve too; "" without one
    oncall_at_once: str  # that the responder on call is approved at once, when the policy says so
    limit: DurationLimit  # the longest a request under this policy may last
    too_long: str  # the service's refusal when the chosen duration is longer than allowed
    nothing_masked: str  # the service's refusal when nothing in the scope is masked for the person
    needs_duration: bool  # a policy's condition reads the duration and none is chosen yet
    project_title: str


def approval_preview(
    *, requester: User, scope: Scope, duration: timedelta | None, extends: AccessRequest | None = None
) -> ApprovalPreview:
    """What sending this request would lead to. `duration` None: not chosen yet. Raises
    `RequestError` for a scope the catalog does not hold, as `request_create` does."""
    project = scope.database.project
    project_settings = access_settings(project)
    columns = scope_columns(scope)
    nothing_masked = ""
    if extends is None:  # an extension is more time on what the person sees now
        try:
            check_something_masked(requester, None, scope, columns)
        except RequestError as refused:
            nothing_masked = refused.message
    level = highest_level(columns)
    longest = longest_allowed(requester, scope, level, project_settings)
    unknown = ApprovalPreview("", False, (), "", "", longest, "", nothing_masked, True, str(project))
    if duration is None and _reads_duration(project.pk):
        return unknown
    policy = match_approval_policy(
        project=project,
        variables={
            **policy_variables(requester, scope, level),
            "duration_hours": (duration or ANY_DURATION).total_seconds() / 3600,
        },
    )
    cap = limit_under(project_settings, policy)
    too_long = longest.refusal(duration) if duration is not None and duration > cap.duration else ""
    candidate = AccessRequest(
        project=project,
        requester=requester,
        database=scope.database,
        policy=policy,
        oncall_provider=policy.oncall_provider if policy else "",
        oncall_schedule_id=policy.oncall_schedule_id if policy else "",
    )
    at_once = policy is not None and policy.auto_approve
    return ApprovalPreview(
        policy_title=policy.title if policy else "",
        approved_at_once=at_once,
        stages=() if at_once else _stages(candidate, policy),
        oncall="" if at_once else oncall_line(candidate),
        oncall_at_once="" if at_once else _responder_at_once(policy, duration),
        limit=cap,
        too_long=too_long,
        nothing_masked=nothing_masked,
        needs_duration=False,
        project_title=str(project),
    )


def _stages(candidate: AccessRequest, policy: ApprovalPolicy | None) -> tuple[PreviewStage, ...]:
    """Each stage's approvers, as `request_create` snapshots them and `eligible_approvers` judges
    them (without asking the on-call provider)."""
    if stages := policy_stages(policy):
        asked = [(str(s["name"]), list(s["approver_roles"]), int(s["approvals_required"])) for s in stages]
    elif policy is not None:
        roles = sorted(policy.approver_roles.values_list("name", flat=True))
        asked = [("", roles, policy.approvals_required)]
    else:
        asked = [("", [], 1)]
    pools: ApproverPools = {}
    preview = []
    for name, roles, required in asked:
        candidate.approver_roles = roles
        people = sorted(str(p) for p in eligible_approvers(candidate, pools, oncall=False))
        named = tuple(people) if len(people) <= PEOPLE_NAMED else ()
        preview.append(PreviewStage(name, tuple(roles), _source(roles, policy), required, named, len(people)))
    return tuple(preview)


def _source(roles: list[str], policy: ApprovalPolicy | None) -> str:
    """Whom a stage's approvers come from: its roles, else (as `eligible_approvers` falls back)
    whoever may approve in the project, or its administrators when no policy matched."""
    if roles:
        quoted = ", ".join(f"“{role}”" for role in roles)
        return f"the role{'s' if len(roles) > 1 else ''} {quoted}"
    return "people who may approve in the project" if policy is not None else "the project's administrators"


def _responder_at_once(policy: ApprovalPolicy | None, duration: timedelta | None) -> str:
    """What the policy's on-call rule approves at once (`oncall.responder_note` decides it at
    submission, asking the provider whether the requester is on call)."""
    if policy is None or not (policy.oncall_schedule_id and policy.oncall_responder_auto_approve):
        return ""
    longest = policy.oncall_responder_max_duration
    if longest is None or (duration is not None and duration > longest):
        return ""
    return (
        f"If you are on call for it when you send the request, a request of up to "
        f"{duration_label(longest)} is approved at once."
    )


def _reads_duration(project_id: int) -> bool:
    """Whether an enabled policy's condition names the duration, so that which one matches cannot
    be known before a duration is chosen (the text is enough: a condition that does not name
    `duration_hours` cannot read it)."""
    return ApprovalPolicy.objects.filter(
        project_id=project_id, enabled=True, condition__contains="duration_hours"
    ).exists()
