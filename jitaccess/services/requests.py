"""Asking for access and deciding on it: create, approve (stage by stage, when the policy has
stages), deny, cancel.

`request_open`, `approve_and_grant`, `locked_request` and `request_target` are shared with
`breakglass` and `grants` (a break-glass grant is a request approved by nobody)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.models import Channel
from audit.services import SYSTEM, Target, record_event
from identity.models import ServiceAccount, User
from identity.services import actor_for
from jitaccess.errors import NotAllowed, RequestError
from jitaccess.models import AccessRequest, Approval, NotificationKind
from jitaccess.policy.matching import match_approval_policy
from jitaccess.selectors.approvers import ApproverPools, can_approve, eligible_approvers
from jitaccess.selectors.oncall import approver_note, responder_note
from jitaccess.selectors.requests import live_extension_of
from jitaccess.selectors.scopes import (
    Scope,
    access_settings,
    check_something_masked,
    extension_refusal,
    highest_level,
    limit_under,
    longest_allowed,
    policy_variables,
    scope_columns,
)
from jitaccess.selectors.stages import policy_stages, stage_detail, stage_refusal
from jitaccess.selectors.tickets import ticket_checked, ticket_format
from jitaccess.services.notifications import notify
from jitaccess.states import Action, ApprovalStep, State, approval_step, next_state
from masking.models import Column
from masking.permissions import REQUEST_UNMASK
from masking.services.policy import grant_condition, grant_create


def request_create(
    *,
    requester: User,
    scope: Scope,
    duration: timedelta,
    reason: str,
    ticket: str = "",
    service_account: ServiceAccount | None = None,
    extends: AccessRequest | None = None,
    channel: str,
) -> AccessRequest:
    """Ask to unmask a scope. Auto-approved when the matching policy says so. `ticket` must be
    one the project accepts (`selectors.tickets`); Jira is asked about it last, outside the
    transaction."""
    project = scope.database.project
    if not requester.has_perm(REQUEST_UNMASK, project):
        raise NotAllowed(f"You cannot request unmask in project {project.key}.")
    if service_account is not None and service_account.owner_id != requester.pk:
        raise RequestError("service_account", f"you do not own service account {service_account.name}")
    if not reason.strip():
        raise RequestError("reason", "is required: say why you need to see these values")
    if duration <= timedelta(0):
        raise RequestError("duration", "must be positive")
    project_settings = access_settings(project)
    given_ticket = ticket_format(project_settings, ticket)
    columns = scope_columns(scope)
    if extends is not None and (refusal := extension_refusal(extends, requester, service_account, scope)):
        raise RequestError("extends", refusal)
    if extends is not None and (already := live_extension_of(extends)) is not None:
        raise RequestError(
            "extends", f"{already.ref} already extends {extends.ref}; extend {already.ref} instead."
        )
    if extends is None:
        check_something_masked(requester, service_account, scope, columns)
    level = highest_level(columns)
    policy = match_approval_policy(
        project=project,
        variables={
            **policy_variables(requester, scope, level),
            "duration_hours": duration.total_seconds() / 3600,
        },
    )
    if duration > limit_under(project_settings, policy).duration:
        longest = longest_allowed(requester, scope, level, project_settings)
        raise RequestError("duration", longest.refusal(duration))

    policy_title = policy.title if policy else "No policy matched: a project administrator approves"
    # A policy's stages are asked one after the other, the first one now; without stages, its own
    # approvers are the one stage.
    stages = policy_stages(policy)
    if stages:
        approvals_required, approver_roles = stages[0]["approvals_required"], stages[0]["approver_roles"]
    elif policy is not None:
        approvals_required = policy.approvals_required
        approver_roles = sorted(policy.approver_roles.values_list("name", flat=True))
    else:
        approvals_required, approver_roles = 1, []
    # Asked before the transaction, so no lock waits on Jira or the on-call provider.
    checked_ticket = ticket_checked(project_settings, given_ticket)
    oncall_note = responder_note(
        policy=policy, requester=requester, duration=duration, for_agent=service_account is not None
    )
    with transaction.atomic():
        request = request_open(
            requester=requester,
            scope=scope,
            columns=columns,
            duration=duration,
            reason=reason,
            action="request.created",
            channel=channel,
            detail={
                "ticket": checked_ticket.given,
                **(
                    {"ticket_title": checked_ticket.title, "ticket_status": checked_ticket.status}
                    if checked_ticket.status
                    else {}
                ),
                "policy": policy_title,
                "approvals_required": approvals_required,
                "extends": extends.ref if extends else None,
                "service_account": service_account.name if service_account else None,
                **({"stages": [stage["name"] for stage in stages]} if stages else {}),
                **(
                    {"oncall_schedule": policy.oncall_schedule_id}
                    if policy and policy.oncall_schedule_id
                    else {}
                ),
            },
            service_account=service_account,
            ticket=checked_ticket.given,
            ticket_url=checked_ticket.url,
            ticket_title=checked_ticket.title,
            ticket_status=checked_ticket.status,
            policy=policy,
            policy_title=policy_title,
            approvals_required=approvals_required,
            approver_roles=approver_roles,
            stages=stages,
            oncall_provider=policy.oncall_provider if policy else "",
            oncall_schedule_id=policy.oncall_schedule_id if policy else "",
            oncall_note=oncall_note,
            pending_until=timezone.now() + project_settings.pending_timeout,
            extends=extends,
        )
        if policy is not None and (policy.auto_approve or oncall_note):
            approve_and_grant(request, approver=None, channel=Channel.SYSTEM)
        else:
            notify(request, NotificationKind.APPROVAL_NEEDED, eligible_approvers(request))
    return request


def request_open(
    *,
    requester: User,
    scope: Scope,
    columns: Sequence[Column],
    duration: timedelta,
    reason: str,
    action: str,
    channel: str,
    detail: dict[str, Any],
    **fields: Any,
) -> AccessRequest:
    """Write a new request for `scope` (its `columns`, from `scope_columns`) and its audit event
    (`action`, whose detail starts with the scope, duration and reason, then `detail`), in the
    caller's transaction: what `request_create` and `breakglass_take` share. `fields`: the rest of
    the row."""
    request = AccessRequest.objects.create(
        project=scope.database.project,
        requester=requester,
        database=scope.database,
        schema_name=scope.schema_name,
        table_name=scope.table_name,
        column_names=list(scope.column_names),
        classification_level=highest_level(columns),
        duration=duration,
        reason=reason.strip(),
        **fields,
    )
    record_event(
        action=action,
        actor=actor_for(requester),
        channel=channel,
        target=request_target(request),
        project=request.project.key,
        detail={
            "scope": request.scope_label,
            "duration_s": int(duration.total_seconds()),
            "reason": request.reason,
            **detail,
        },
    )
    return request


def locked_request(request_id: int, *related: str) -> AccessRequest:
    """The request row, locked FOR UPDATE until the caller's transaction ends (see `services`)."""
    return (
        AccessRequest.objects.select_for_update(of=("self",))
        .select_related("requester", "project", *related)
        .get(pk=request_id)
    )


def request_target(request: AccessRequest) -> Target:
    """The request as its audit events name it."""
    return Target("request", str(request.pk), f"{request.ref} {request.scope_label}")


@transaction.atomic
def request_approve(*, request_id: int, approver: User, channel: str) -> AccessRequest:
    """Record one person's approval; grant when the quorum of distinct people is reached. With
    stages, the quorum of the stage waiting opens the next stage, and only the last one grants.

    Locking contract: takes the request row FOR UPDATE first. Idempotent per person: a second
    click by the same person (or their second account with the same IdP subject) at the same
    stage adds nothing; at a later stage it is refused (one person approves one stage).
    """
    request = locked_request(request_id)
    if request.state != State.PENDING:
        next_state(request.state, Action.APPROVE)  # raises InvalidTransition naming the current state
    if approver.canonical_subject == request.requester.canonical_subject:
        raise NotAllowed("You cannot approve your own request.")
    pools: ApproverPools = {}  # the on-call provider, if the request names one, is asked once
    if not can_approve(request, approver, pools):
        raise NotAllowed(stage_refusal(request, approver) or "You are not an approver for this request.")
    _, created = Approval.objects.get_or_create(
        request=request,
        approver_subject=approver.canonical_subject,
        defaults={"approver": approver, "channel": channel, "stage": request.stage},
    )
    if created:
        count = request.approvals.filter(stage=request.stage).count()
        record_event(
            action="request.approval_recorded",
            actor=actor_for(approver),
            channel=channel,
            target=request_target(request),
            project=request.project.key,
            detail={
                "approvals": count,
                "required": request.approvals_required,
                **stage_detail(request),
                **({"oncall": note} if (note := approver_note(request, approver, pools)) else {}),
            },
        )
        step = approval_step(
            approvals=count,
            required=request.approvals_required,
            stage=request.stage,
            stage_count=request.stage_count,
        )
        if step == ApprovalStep.NEXT_STAGE:
            stage_open_next(request, approver=approver, channel=channel)
        elif step == ApprovalStep.GRANT:
            approve_and_grant(request, approver=approver, channel=channel)
    notify(request, NotificationKind.STATE_CHANGED, [])
    return request


def stage_open_next(request: AccessRequest, *, approver: User, channel: str) -> None:
    """The stage waiting has its quorum: open the next one and ask its approvers, and only them
    (someone who approved an earlier stage is not asked again), in the caller's transaction.

    Locking contract: the caller holds the request row FOR UPDATE (`request_approve`), so two
    approvals completing a stage at once open the next stage once."""
    completed, completed_name = request.stage, request.stage_name
    approvers = [a.approver_subject for a in request.approvals.filter(stage=completed)]
    request.stage = completed + 1
    opened = request.stages[request.stage - 1]
    request.approver_roles, request.approvals_required = (
        list(opened["approver_roles"]),
        int(opened["approvals_required"]),
    )
    request.save(update_fields=["stage", "approver_roles", "approvals_required"])
    record_event(
        action="request.stage_completed",
        actor=actor_for(approver),
        channel=channel,
        target=request_target(request),
        project=request.project.key,
        detail={
            "stage": completed,
            "stage_name": completed_name,
            "approvers": approvers,
            "next_stage": request.stage,
            "next_stage_name": request.stage_name,
        },
    )
    notify(request, NotificationKind.APPROVAL_NEEDED, eligible_approvers(request))


def approve_and_grant(request: AccessRequest, *, approver: User | None, channel: str) -> None:
    """pending -> approved: create the grant (an exemption with an expiry) and announce it.

    A break-glass grant goes through the same transition but nobody approved it: its
    `breakglass.taken` event says what happened, so no `request.approved` event and no
    "approved" notice are written for it."""
    request.state = next_state(request.state, Action.APPROVE)
    now = timezone.now()
    start = max(now, request.extends.expires_at) if request.extends and request.extends.expires_at else now
    request.starts_at, request.expires_at = start, start + request.duration
    request.decided_at = now
    principal: User | ServiceAccount = request.service_account or request.requester
    request.grant = grant_create(
        project=request.project,
        principal=principal,
        condition=grant_condition(
            instance=request.database.instance.key,
            database=request.database.name,
            schema=request.schema_name,
            table=request.table_name,
            columns=request.column_names,
        ),
        starts_at=start if start > now else None,
        expires_at=request.expires_at,
        reason=request.reason,
        request_ref=request.ref,
        actor=actor_for(approver) if approver else SYSTEM,
        channel=channel,
    )
    request.save(update_fields=["state", "starts_at", "expires_at", "decided_at", "grant"])
    if request.is_breakglass:
        return
    approvers = [a.approver_subject for a in request.approvals.all()]
    record_event(
        action="request.approved",
        actor=actor_for(approver) if approver else SYSTEM,
        channel=channel,
        target=request_target(request),
        project=request.project.key,
        detail={
            "approvers": approvers,
            "auto_approved": approver is None,
            **({"oncall": request.oncall_note} if request.oncall_note else {}),
            **({"starts_at": start} if start > now else {}),
            "expires_at": request.expires_at,
            "grant": request.grant.pk,
        },
    )
    notify(request, NotificationKind.APPROVED, [request.requester])


@transaction.atomic
def request_deny(*, request_id: int, approver: User, reason: str, channel: str) -> AccessRequest:
    if not reason.strip():
        raise RequestError("reason", "say why the request is denied")
    request = locked_request(request_id)
    if request.state != State.PENDING:
        next_state(request.state, Action.DENY)
    if approver.canonical_subject == request.requester.canonical_subject:
        raise NotAllowed("You cannot decide your own request; cancel it instead.")
    if not can_approve(request, approver):
        raise NotAllowed(stage_refusal(request, approver) or "You are not an approver for this request.")
    request.state = next_state(request.state, Action.DENY)
    request.deny_reason, request.decided_at, request.ended_by = reason.strip(), timezone.now(), approver
    request.save(update_fields=["state", "deny_reason", "decided_at", "ended_by"])
    record_event(
        action="request.denied",
        actor=actor_for(approver),
        channel=channel,
        target=request_target(request),
        project=request.project.key,
        detail={"reason": request.deny_reason, **stage_detail(request)},
    )
    notify(request, NotificationKind.DENIED, [request.requester])
    notify(request, NotificationKind.STATE_CHANGED, [])
    return request


@transaction.atomic
def request_cancel(*, request_id: int, requester: User, channel: str) -> AccessRequest:
    request = locked_request(request_id)
    if request.requester_id != requester.pk:
        raise NotAllowed("Only the requester can cancel a request.")
    request.state = next_state(request.state, Action.CANCEL)
    request.ended_at, request.ended_by = timezone.now(), requester
    request.save(update_fields=["state", "ended_at", "ended_by"])
    record_event(
        action="request.cancelled",
        actor=actor_for(requester),
        channel=channel,
        target=request_target(request),
        project=request.project.key,
    )
    notify(request, NotificationKind.STATE_CHANGED, [])
    return request
