"""Writes for just-in-time access: create, approve, deny, cancel, revoke, relinquish, sweep, break-glass.

Every function follows one pattern: check (raise `RequestError` naming the field, or
`InvalidTransition` naming the current state), then in one transaction lock the request row
(`SELECT ... FOR UPDATE`), apply the state machine, write the grant through `masking`, the audit
event and the outbox notifications. Two approvers clicking at once therefore serialise on the row:
the second sees the first's result and either adds its approval or is told the request's state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Q, QuerySet
from django.utils import timezone
from guardian.core import ObjectPermissionChecker
from guardian.shortcuts import get_users_with_perms

from audit.models import Channel
from audit.services import SYSTEM, Actor, Target, record_event
from identity.models import ServiceAccount, User
from identity.selectors import role_names_of_user, users_in_roles
from identity.services import actor_for
from jitaccess.formatting import duration_label, moment_label
from jitaccess.models import (
    AccessRequest,
    Approval,
    ApprovalPolicy,
    Notification,
    NotificationChannel,
    NotificationKind,
    ProjectAccessSettings,
)
from jitaccess.policies import match_approval_policy
from jitaccess.states import LIVE_STATES, Action, State, next_state
from masking.decisions.engine import ColumnKey, Decision
from masking.models import Column, Database, Project
from masking.permissions import ADMINISTER_POLICY, APPROVE_REQUEST, REQUEST_UNMASK, codename
from masking.selectors import decision_caches, read_epochs
from masking.services.policy import exemption_revoke, grant_condition, grant_create

EXPIRY_NOTICE = timedelta(minutes=15)
END_REASON_LIMIT = 2000


class RequestError(ValueError):
    """A request refused before anything was written; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotAllowed(PermissionError):
    """The person may not do this to this request (the message says why, for them to read)."""


@dataclass(frozen=True)
class Scope:
    database: Database
    schema_name: str | None = None
    table_name: str | None = None
    column_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class DurationLimit:
    """The longest grant a request may ask for: the project's cap, or the matching approval
    policy's when it is tighter."""

    duration: timedelta
    policy_title: str = ""  # the approval policy whose cap this is; "" when it is the project's
    exact: bool = True  # False: the scope is not chosen yet and an approval policy may allow less

    def describe(self) -> str:
        """ "at most 1 day under the policy 'Production PII'" or "at most 7 days in this project"."""
        where = f"under the policy '{self.policy_title}'" if self.policy_title else "in this project"
        return f"at most {duration_label(self.duration)} {where}"

    def refusal(self, asked: timedelta) -> str:
        return f"{self.describe()} (you asked {duration_label(asked)})"


def live_extension_of(request: AccessRequest) -> AccessRequest | None:
    """The extension asked for this grant and not ended (pending or approved), if any: a grant has
    at most one, and more time after it is asked on that extension."""
    return live_extensions(request).order_by("pk").first()


def live_extensions(of: AccessRequest | OuterRef) -> QuerySet[AccessRequest]:
    """The extensions of `of` (a request, or an `OuterRef` to one) pending or approved."""
    return AccessRequest.objects.filter(extends=of, state__in=LIVE_STATES)


def grants_in_force(
    *, requester_id: int, service_account_id: int | None, database_id: int
) -> QuerySet[AccessRequest]:
    """The principal's grants on the database that unmask now (approved, started, not expired)."""
    now = timezone.now()
    return AccessRequest.objects.filter(
        Q(starts_at__isnull=True) | Q(starts_at__lte=now),
        requester=requester_id,
        service_account=service_account_id,
        database=database_id,
        state=State.APPROVED,
        expires_at__gt=now,
    )


def access_settings_state(settings: ProjectAccessSettings) -> dict[str, Any]:
    """What a project's request and break-glass settings say, as the audit log records them."""
    return {
        "max_duration": duration_label(settings.max_duration),
        "pending_timeout": duration_label(settings.pending_timeout),
        "breakglass_max_duration": duration_label(settings.breakglass_max_duration),
        "breakglass_roles": sorted(settings.breakglass_roles.values_list("name", flat=True))
        if settings.pk
        else [],
        "security_emails": settings.security_emails,
    }


def record_access_settings_change(
    *, settings: ProjectAccessSettings, before: dict[str, Any], actor: User, channel: str
) -> None:
    """Record a change of a project's access settings (saved by the caller, in its transaction):
    who may break the glass and for how long, the caps and who is alerted decide who sees PII."""
    after = access_settings_state(settings)
    if after == before:
        return
    changed = sorted(k for k in after if after[k] != before.get(k))
    record_event(
        action="project.access_settings_updated",
        actor=actor_for(actor),
        channel=channel,
        target=Target("project", settings.project.key, settings.project.title),
        project=settings.project.key,
        detail={"before": {k: before.get(k) for k in changed}, "after": {k: after[k] for k in changed}},
    )


def access_settings(project: Project) -> ProjectAccessSettings:
    """The project's limits, without creating a row on a read (an unsaved row carries the defaults)."""
    saved = ProjectAccessSettings.objects.filter(project=project).first()
    return saved or ProjectAccessSettings(project=project)


def duration_limit(*, requester: User, database: Database, scope: Scope | None = None) -> DurationLimit:
    """The longest duration `requester` may ask for in `database`, as `request_create` enforces it.

    With a `scope`, the approval policy the request would match decides (exact). Without one, the
    project's cap, exact only when no enabled approval policy of the project has a tighter cap."""
    project = database.project
    project_settings = access_settings(project)
    if scope is None:
        tighter = ApprovalPolicy.objects.filter(
            project=project, enabled=True, max_duration__lt=project_settings.max_duration
        ).exists()
        return DurationLimit(project_settings.max_duration, exact=not tighter)
    return _longest(requester, scope, _highest_level(_scope_columns(scope)), project_settings)


def _longest(
    requester: User, scope: Scope, level: int, project_settings: ProjectAccessSettings
) -> DurationLimit:
    """The longest duration the policy matching it allows, named after the cap that stops longer.

    A condition may read `request.duration_hours`, so the policy, and its cap, can change with the
    duration: start at the project's cap and step down to each matched policy's cap until one
    allows itself (the caps strictly decrease, so this ends). When a policy refused a longer one,
    its condition may stop matching before its cap: bisect, in whole hours, between the longest
    allowed so far and the shortest refused. The answer is always a duration that is allowed."""
    variables = _policy_variables(requester, scope, level)

    def limit_at(duration: timedelta) -> DurationLimit:
        matched = match_approval_policy(
            project=scope.database.project,
            variables={**variables, "duration_hours": duration.total_seconds() / 3600},
        )
        return _limit(project_settings, matched)

    allowed = project_settings.max_duration
    refused: tuple[timedelta, DurationLimit] | None = None
    while (limit := limit_at(allowed)).duration < allowed:
        refused, allowed = (allowed, limit), limit.duration
    if refused is None:
        return limit
    too_long, refusing = refused
    hour = timedelta(hours=1)
    while too_long - allowed > hour:
        middle = allowed + hour * max(1, (too_long - allowed) // hour // 2)
        if middle <= limit_at(middle).duration:
            allowed = middle
        else:
            too_long = middle
    return DurationLimit(allowed, refusing.policy_title)


def _limit(project_settings: ProjectAccessSettings, policy: ApprovalPolicy | None) -> DurationLimit:
    cap = policy.max_duration if policy is not None else None
    if policy is not None and cap and cap < project_settings.max_duration:
        return DurationLimit(cap, policy.title)
    return DurationLimit(project_settings.max_duration)


def _policy_variables(requester: User, scope: Scope, level: int) -> dict[str, Any]:
    """What an approval policy's condition reads of a request (`request.*`), but its duration."""
    project = scope.database.project
    return {
        "environment_id": scope.database.instance.environment,
        "project_id": project.key,
        "instance_id": scope.database.instance.key,
        "database_name": scope.database.name,
        "table_name": scope.table_name or "",
        "classification_level": level,
        "requester_roles": sorted(role_names_of_user(requester)),
        "requester_groups": sorted(requester.groups.values_list("name", flat=True)),
    }


def _scope_columns(scope: Scope) -> list[Column]:
    """The catalog columns a scope covers; refuses a table or column the catalog does not have."""
    columns = Column.objects.filter(table__schema__database=scope.database, discovered_by_decision=False)
    if scope.schema_name is not None:
        columns = columns.filter(table__schema__name=scope.schema_name)
    if scope.table_name:
        columns = columns.filter(table__name=scope.table_name)
        if not columns.exists():
            raise RequestError("table", f"no table {scope.table_name!r} in {scope.database}")
    if scope.column_names:
        if not scope.table_name:
            raise RequestError("columns", "choose a table for the columns")
        found = set(columns.filter(name__in=scope.column_names).values_list("name", flat=True))
        missing = [c for c in scope.column_names if c not in found]
        if missing:
            raise RequestError("columns", f"unknown column(s) in {scope.table_name}: {', '.join(missing)}")
        columns = columns.filter(name__in=scope.column_names)
    found_columns = list(columns.select_related("table__schema__database__instance"))
    if not found_columns:
        raise RequestError("scope", f"{scope.database} has no catalogued columns to unmask")
    return found_columns


def _nothing_masked(
    requester: User, service_account: ServiceAccount | None, scope: Scope, *, to: str = "request"
) -> str:
    """Why there is nothing to request (`to`: or to break the glass for): the person's live grant
    covering the scope, when one does (an exemption or an unmasking rule may be the reason
    instead; those are not named)."""
    grants = grants_in_force(
        requester_id=requester.pk,
        service_account_id=service_account.pk if service_account else None,
        database_id=scope.database.pk,
    )
    for grant in grants.order_by("-expires_at"):
        if _covers(grant, scope):
            return (
                f"nothing in this scope is masked for you: your grant {grant.ref} already covers it "
                f"until {moment_label(grant.expires_at)}; extend that grant if you need more time"
            )
    return f"nothing in this scope is masked for you; there is nothing to {to}"


def _covers(grant: AccessRequest, scope: Scope) -> bool:
    """Whether a grant's scope (None/empty meaning every schema, table or column) holds `scope`."""
    if grant.schema_name is not None and grant.schema_name != scope.schema_name:
        return False
    if grant.table_name and grant.table_name != scope.table_name:
        return False
    return not grant.column_names or (
        bool(scope.column_names) and set(scope.column_names) <= set(grant.column_names)
    )


def _masked_for(principal_spec: dict[str, str], columns: Sequence[Column]) -> list[Column]:
    """The columns of the scope that the principal would see masked right now."""
    keys = [_column_key(c.table.schema.database, c) for c in columns]
    unmasks = _unmasks(principal_spec, keys)
    if unmasks is None:
        return list(columns)
    return [c for c, unmask in zip(columns, unmasks, strict=True) if not unmask]


def columns_unmasked_for(user: User, database: Database, columns: Sequence[Column]) -> set[int]:
    """Which of a database's columns the person already sees in clear (an exemption, a live grant,
    a rule or classification that does not mask them), so the request form can say so. Columns are
    those of `database`, with their table and schema loaded."""
    return {pk for pk, decision in column_decisions_for(user, database, columns).items() if decision.unmask}


def column_decisions_for(user: User, database: Database, columns: Sequence[Column]) -> dict[int, Decision]:
    """Each column's answer for the person right now (by column id), as the decision path gives it,
    with its reason: the request form says what is masked for them and why. Empty when Veil does
    not know the person (everything is then masked)."""
    decisions = _decisions({"user": user.username}, [_column_key(database, c) for c in columns])
    return {c.pk: d for c, d in zip(columns, decisions or [], strict=False)}


def _column_key(database: Database, column: Column) -> ColumnKey:
    return ColumnKey(
        database.instance.key, database.name, column.table.schema.name, column.table.name, column.name
    )


def _unmasks(principal_spec: dict[str, str], keys: Sequence[ColumnKey]) -> list[bool] | None:
    """Whether the principal sees each column in clear right now, as the decision path answers;
    None when Veil does not know the principal."""
    decisions = _decisions(principal_spec, keys)
    return None if decisions is None else [d.unmask for d in decisions]


def _decisions(principal_spec: dict[str, str], keys: Sequence[ColumnKey]) -> list[Decision] | None:
    epochs = read_epochs()
    principal = decision_caches.principal(principal_spec, frozenset())
    if principal is None:
        return None
    grants = decision_caches.grants(epochs, principal)
    now = timezone.now().timestamp()
    return list(decision_caches.policy(epochs).decide(principal, keys, grants, now=now))


def request_create(
    *,
    requester: User,
    scope: Scope,
    duration: timedelta,
    reason: str,
    ticket_url: str = "",
    service_account: ServiceAccount | None = None,
    extends: AccessRequest | None = None,
    channel: str,
) -> AccessRequest:
    """Ask to unmask a scope. Auto-approved when the matching policy says so."""
    project = scope.database.project
    if not requester.has_perm(REQUEST_UNMASK, project):
        raise NotAllowed(f"You cannot request unmask in project {project.key}.")
    if service_account is not None and service_account.owner_id != requester.pk:
        raise RequestError("service_account", f"you do not own service account {service_account.name}")
    if not reason.strip():
        raise RequestError("reason", "is required: say why you need to see these values")
    if duration <= timedelta(0):
        raise RequestError("duration", "must be positive")
    columns = _scope_columns(scope)
    principal_spec = (
        {"service_account": service_account.name} if service_account else {"user": requester.username}
    )
    if extends is not None and (refusal := _extension_refusal(extends, requester, service_account, scope)):
        raise RequestError("extends", refusal)
    if extends is not None and (already := live_extension_of(extends)) is not None:
        raise RequestError(
            "extends", f"{already.ref} already extends {extends.ref}; extend {already.ref} instead."
        )
    if extends is None and not _masked_for(principal_spec, columns):
        raise RequestError("scope", _nothing_masked(requester, service_account, scope))
    level = _highest_level(columns)
    policy = match_approval_policy(
        project=project,
        variables={
            **_policy_variables(requester, scope, level),
            "duration_hours": duration.total_seconds() / 3600,
        },
    )
    project_settings = access_settings(project)
    if duration > _limit(project_settings, policy).duration:
        longest = _longest(requester, scope, level, project_settings)
        raise RequestError("duration", longest.refusal(duration))

    with transaction.atomic():
        request = AccessRequest.objects.create(
            project=project,
            requester=requester,
            service_account=service_account,
            database=scope.database,
            schema_name=scope.schema_name,
            table_name=scope.table_name,
            column_names=list(scope.column_names),
            classification_level=level,
            duration=duration,
            reason=reason.strip(),
            ticket_url=ticket_url,
            policy=policy,
            policy_title=policy.title if policy else "No policy matched: a project administrator approves",
            approvals_required=policy.approvals_required if policy else 1,
            approver_roles=sorted(policy.approver_roles.values_list("name", flat=True)) if policy else [],
            pending_until=timezone.now() + project_settings.pending_timeout,
            extends=extends,
        )
        record_event(
            action="request.created",
            actor=actor_for(requester),
            channel=channel,
            target=_target(request),
            project=project.key,
            detail={
                "scope": request.scope_label,
                "duration_s": int(duration.total_seconds()),
                "reason": request.reason,
                "ticket": ticket_url,
                "policy": request.policy_title,
                "approvals_required": request.approvals_required,
                "extends": extends.ref if extends else None,
                "service_account": service_account.name if service_account else None,
            },
        )
        if policy is not None and policy.auto_approve:
            _approve(request, approver=None, channel=Channel.SYSTEM)
        else:
            notify(request, NotificationKind.APPROVAL_NEEDED, eligible_approvers(request))
    return request


def _extension_refusal(
    extends: AccessRequest, requester: User, service_account: ServiceAccount | None, scope: Scope
) -> str:
    """Why `requester` may not extend `extends` with `scope`; "" when they may. An extension is
    more time on one's own active grant, for the same principal and the same scope: it skips the
    "nothing is masked" check and starts when the grant ends, and ending the grant ends it. Read
    afresh: the caller's copy may predate the grant's approval or its end."""
    extends = AccessRequest.objects.get(pk=extends.pk)
    if extends.requester_id != requester.pk or extends.service_account_id != (
        service_account.pk if service_account else None
    ):
        return f"{extends.ref} is not your grant: only its requester can extend it, for the same principal"
    if extends.state != State.APPROVED:
        return f"{extends.ref} is {extends.get_state_display().lower()}: only an active grant can be extended"
    same = (
        extends.database_id == scope.database.pk
        and extends.schema_name == scope.schema_name
        and (extends.table_name or None) == (scope.table_name or None)
        and sorted(extends.column_names) == sorted(scope.column_names)
    )
    if not same:
        return f"an extension covers the scope of {extends.ref} ({extends.scope_label}), nothing else"
    return ""


ApproverPools = dict[tuple[object, ...], list[User]]


def eligible_approvers(request: AccessRequest, pools: ApproverPools | None = None) -> list[User]:
    """Who may approve: members of the policy's approver roles; without roles, people with
    `approve_request` on the project; with no policy, the project's administrators. Never the
    requester.

    `pools`, a dict the caller keeps across many requests (a queue), holds each distinct pool of
    candidates once, so judging N requests costs one query per distinct pool, not one per request."""
    if request.approver_roles:
        key: tuple[object, ...] = ("roles", *sorted(request.approver_roles))
    else:
        key = ("perm", APPROVE_REQUEST if request.policy_id else ADMINISTER_POLICY, request.project_id)
    pools = {} if pools is None else pools
    if key not in pools:
        if request.approver_roles:
            pools[key] = list(users_in_roles(request.approver_roles))
        else:
            pools[key] = list(_people_with_perm(request.project, str(key[1])))
    return [
        p for p in pools[key] if p.is_active and p.canonical_subject != request.requester.canonical_subject
    ]


def _people_with_perm(project: Project, perm: str) -> QuerySet[User]:
    """People granted `perm` on the project, directly or through a group (superusers only if granted).
    guardian annotates the result `Any | list[str]`; without `attach_perms` it is a queryset of users."""
    people = get_users_with_perms(project, only_with_perms_in=[codename(perm)], with_group_users=True)
    return cast("QuerySet[User]", people)


def can_approve(request: AccessRequest, user: User, pools: ApproverPools | None = None) -> bool:
    return user.canonical_subject != request.requester.canonical_subject and any(
        p.pk == user.pk for p in eligible_approvers(request, pools)
    )


def can_revoke(request: AccessRequest, user: User) -> bool:
    """An approver of the request or an administrator of its project; `grant_end` enforces it and the
    pages use it to decide whether to offer the button."""
    return can_approve(request, user) or user.has_perm(ADMINISTER_POLICY, request.project)


def end_refusal(request: AccessRequest, user: User, action: str) -> str:
    """Why `user` may not revoke or relinquish (`action`) the request's grant; "" when they may.
    `grant_end` enforces it; the confirmation page asks it before offering the button."""
    if action == Action.RELINQUISH and request.requester_id != user.pk:
        return "Only the requester can relinquish a grant."
    if action == Action.REVOKE and not can_revoke(request, user):
        return "Only an approver or a project administrator can revoke a grant."
    return ""


def can_review_breakglass(
    request: AccessRequest, user: User, perms: ObjectPermissionChecker | None = None
) -> bool:
    """A project administrator other than the person who broke the glass (by IdP subject, so not
    their second account either): the two checks `breakglass_review` makes, each with its message.
    `perms`: the person's guardian checker with the projects prefetched, when judging a list."""
    other_person = request.requester.canonical_subject != user.canonical_subject
    return other_person and (perms or user).has_perm(ADMINISTER_POLICY, request.project)


def _locked(request_id: int, *related: str) -> AccessRequest:
    """The request row, locked FOR UPDATE until the caller's transaction ends (see the module doc)."""
    return (
        AccessRequest.objects.select_for_update(of=("self",))
        .select_related("requester", "project", *related)
        .get(pk=request_id)
    )


@transaction.atomic
def request_approve(*, request_id: int, approver: User, channel: str) -> AccessRequest:
    """Record one person's approval; grant when the quorum of distinct people is reached.

    Locking contract: takes the request row FOR UPDATE first. Idempotent per person: a second
    click by the same person (or their second account with the same IdP subject) adds nothing.
    """
    request = _locked(request_id)
    if request.state != State.PENDING:
        next_state(request.state, Action.APPROVE)  # raises InvalidTransition naming the current state
    if approver.canonical_subject == request.requester.canonical_subject:
        raise NotAllowed("You cannot approve your own request.")
    if not can_approve(request, approver):
        raise NotAllowed("You are not an approver for this request.")
    _, created = Approval.objects.get_or_create(
        request=request,
        approver_subject=approver.canonical_subject,
        defaults={"approver": approver, "channel": channel},
    )
    if created:
        count = request.approvals.count()
        record_event(
            action="request.approval_recorded",
            actor=actor_for(approver),
            channel=channel,
            target=_target(request),
            project=request.project.key,
            detail={"approvals": count, "required": request.approvals_required},
        )
        if count >= request.approvals_required:
            _approve(request, approver=approver, channel=channel)
    notify(request, NotificationKind.STATE_CHANGED, [])
    return request


def _approve(request: AccessRequest, *, approver: User | None, channel: str) -> None:
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
        target=_target(request),
        project=request.project.key,
        detail={
            "approvers": approvers,
            "auto_approved": approver is None,
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
    request = _locked(request_id)
    if request.state != State.PENDING:
        next_state(request.state, Action.DENY)
    if approver.canonical_subject == request.requester.canonical_subject:
        raise NotAllowed("You cannot decide your own request; cancel it instead.")
    if not can_approve(request, approver):
        raise NotAllowed("You are not an approver for this request.")
    request.state = next_state(request.state, Action.DENY)
    request.deny_reason, request.decided_at, request.ended_by = reason.strip(), timezone.now(), approver
    request.save(update_fields=["state", "deny_reason", "decided_at", "ended_by"])
    record_event(
        action="request.denied",
        actor=actor_for(approver),
        channel=channel,
        target=_target(request),
        project=request.project.key,
        detail={"reason": request.deny_reason},
    )
    notify(request, NotificationKind.DENIED, [request.requester])
    notify(request, NotificationKind.STATE_CHANGED, [])
    return request


@transaction.atomic
def request_cancel(*, request_id: int, requester: User, channel: str) -> AccessRequest:
    request = _locked(request_id)
    if request.requester_id != requester.pk:
        raise NotAllowed("Only the requester can cancel a request.")
    request.state = next_state(request.state, Action.CANCEL)
    request.ended_at, request.ended_by = timezone.now(), requester
    request.save(update_fields=["state", "ended_at", "ended_by"])
    record_event(
        action="request.cancelled",
        actor=actor_for(requester),
        channel=channel,
        target=_target(request),
        project=request.project.key,
    )
    notify(request, NotificationKind.STATE_CHANGED, [])
    return request


@transaction.atomic
def grant_end(*, request_id: int, user: User, action: str, channel: str, reason: str = "") -> AccessRequest:
    """Revoke (an approver or a project administrator) or relinquish (the requester) a grant,
    and with it the extensions asked for it: approved ones (scheduled to start when it ends) end
    the same way, pending ones are cancelled.

    `reason` is optional (Slack and older clients pass none); it is kept in the audit event's
    detail and shown to the requester with the revocation (`selectors.end_reason`).

    Effective at once: the grants' exemptions are revoked in the same transaction, which moves the
    grants epoch that every decision reads.
    """
    reason = reason.strip()
    if len(reason) > END_REASON_LIMIT:
        raise RequestError("reason", f"is too long: at most {END_REASON_LIMIT} characters")
    request = _locked(request_id, "grant")
    if refusal := end_refusal(request, user, action):
        raise NotAllowed(refusal)
    _end_with_extensions(
        request,
        actor=actor_for(user),
        ended_by=user,
        action=action,
        channel=channel,
        because=None,
        reason=reason,
    )
    if action == Action.REVOKE:
        notify(request, NotificationKind.REVOKED, [request.requester])
    return request


def _end_with_extensions(
    request: AccessRequest,
    *,
    actor: Actor,
    ended_by: User | None,
    action: str,
    channel: str,
    because: AccessRequest | None,
    reason: str = "",
) -> None:
    """End one locked request (`action`; an extension still pending is cancelled), then its
    extensions. `ended_by` is the person who ended it; None when no person did (directory sync)."""
    pending = because is not None and request.state == State.PENDING
    request.state = next_state(request.state, Action.CANCEL if pending else action)
    request.ended_at, request.ended_by = timezone.now(), ended_by
    request.save(update_fields=["state", "ended_at", "ended_by"])
    if request.grant is not None:
        exemption_revoke(exemption=request.grant, actor=actor, channel=channel)
    detail: dict[str, str] = {"because": f"{because.ref} was {because.state}"} if because else {}
    if reason:
        detail["reason"] = reason
    record_event(
        action=f"request.{request.state}",
        actor=actor,
        channel=channel,
        target=_target(request),
        project=request.project.key,
        detail=detail,
    )
    notify(request, NotificationKind.STATE_CHANGED, [])
    extensions = live_extensions(request).select_for_update(of=("self",)).select_related("grant", "project")
    for extension in extensions.order_by("pk"):
        _end_with_extensions(
            extension,
            actor=actor,
            ended_by=ended_by,
            action=action,
            channel=channel,
            because=request,
            reason=reason,
        )


PERSON_DEACTIVATED_REASON = "deactivated in the company directory (SCIM)"


def requests_end_for_deactivated(person: User, actor: Actor, channel: str) -> None:
    """The IdP deactivated `person`: revoke their grants in force (and the extensions asked for
    them) and cancel their pending requests, agents' included, in the deactivation's transaction
    (`identity.directory.deactivation_handlers`). Attributed to `actor`, the directory's service
    account; no person ended them, so `ended_by` stays empty and the event says why.

    Locking contract: each request row is taken FOR UPDATE and its state re-checked, so a request
    ended meanwhile (or with the grant it extends) is left as it is."""
    live = AccessRequest.objects.filter(requester=person, state__in=LIVE_STATES).order_by("pk")
    for pk in live.values_list("pk", flat=True):
        request = _locked(pk, "grant")
        if request.state not in LIVE_STATES:
            continue
        action = Action.CANCEL if request.state == State.PENDING else Action.REVOKE
        _end_with_extensions(
            request,
            actor=actor,
            ended_by=None,
            action=action,
            channel=channel,
            because=None,
            reason=PERSON_DEACTIVATED_REASON,
        )


@dataclass
class SweepResult:
    expired: int = 0
    timed_out: int = 0
    expiry_notices: int = 0


def requests_sweep(*, now: datetime | None = None) -> SweepResult:
    """Expire grants past their time, time out undecided requests, warn 15 minutes before expiry.

    Idempotent and safe to run concurrently: each request is claimed FOR UPDATE SKIP LOCKED and
    re-checked; notices are deduplicated by key. The decision path never waits for this: it
    compares `expires_at` with the clock itself.
    """
    now = now or timezone.now()
    result = SweepResult()
    for pk in AccessRequest.objects.filter(state=State.APPROVED, expires_at__lte=now).values_list(
        "pk", flat=True
    ):
        result.expired += _sweep_one(pk, State.APPROVED, Action.EXPIRE, now)
    for pk in AccessRequest.objects.filter(state=State.PENDING, pending_until__lte=now).values_list(
        "pk", flat=True
    ):
        result.timed_out += _sweep_one(pk, State.PENDING, Action.TIME_OUT, now)
    soon = AccessRequest.objects.filter(
        state=State.APPROVED, expires_at__gt=now, expires_at__lte=now + EXPIRY_NOTICE
    ).select_related("requester", "project")
    for request in soon:
        with transaction.atomic():
            result.expiry_notices += notify(request, NotificationKind.EXPIRING, [request.requester])
    return result


@transaction.atomic
def _sweep_one(pk: int, expected: str, action: str, now: datetime) -> int:
    request = (
        AccessRequest.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("requester", "project")
        .filter(pk=pk, state=expected)
        .first()
    )
    if request is None:
        return 0  # another sweeper has it, or it changed meanwhile
    request.state = next_state(request.state, action)
    if action == Action.EXPIRE:
        # Access ended at expires_at (the decision path stopped honouring it then), not when this
        # sweep ran, which may be long after if no worker was up: both are kept, apart.
        request.ended_at, request.expiry_processed_at = request.expires_at, now
        detail = {"expires_at": request.expires_at, "ended_at": request.expires_at, "processed_at": now}
    else:
        request.ended_at, detail = now, {}
    request.save(update_fields=["state", "ended_at", "expiry_processed_at"])
    kind = NotificationKind.EXPIRED if action == Action.EXPIRE else NotificationKind.TIMED_OUT
    record_event(
        action="grant.expired" if action == Action.EXPIRE else "request.timed_out",
        actor=SYSTEM,
        channel=Channel.SYSTEM,
        target=_target(request),
        project=request.project.key,
        detail=detail,
    )
    notify(request, kind, [request.requester])
    notify(request, NotificationKind.STATE_CHANGED, [])
    return 1


def breakglass_take(
    *, requester: User, scope: Scope, duration: timedelta, reason: str, channel: str
) -> AccessRequest:
    """Immediate access for an incident: no approver, a short cap, security alerted at once, and
    a review owed by someone else afterwards."""
    project = scope.database.project
    project_settings = access_settings(project)
    # Unsaved settings (the defaults) name no break-glass role.
    roles = project_settings.breakglass_roles.values_list("name", flat=True) if project_settings.pk else []
    allowed = set(roles)
    if not allowed or allowed.isdisjoint(role_names_of_user(requester)):
        raise NotAllowed(f"You are not in a break-glass role of project {project.key}.")
    if not reason.strip():
        raise RequestError("reason", "is required for break-glass: name the incident")
    if duration <= timedelta(0) or duration > project_settings.breakglass_max_duration:
        raise RequestError(
            "duration",
            f"break-glass lasts at most {duration_label(project_settings.breakglass_max_duration)}",
        )
    columns = _scope_columns(scope)
    # As a request is: a scope the taker already sees in clear is refused before anyone is alerted.
    if not _masked_for({"user": requester.username}, columns):
        raise RequestError("scope", _nothing_masked(requester, None, scope, to="break the glass for"))
    with transaction.atomic():
        request = AccessRequest.objects.create(
            project=project,
            requester=requester,
            database=scope.database,
            schema_name=scope.schema_name,
            table_name=scope.table_name,
            column_names=list(scope.column_names),
            classification_level=_highest_level(columns),
            duration=duration,
            reason=reason.strip(),
            policy_title="Break-glass",
            approvals_required=0,
            pending_until=timezone.now(),
            is_breakglass=True,
        )
        record_event(
            action="breakglass.taken",
            actor=actor_for(requester),
            channel=channel,
            target=_target(request),
            project=project.key,
            detail={
                "scope": request.scope_label,
                "duration_s": int(duration.total_seconds()),
                "reason": request.reason,
            },
        )
        _approve(request, approver=None, channel=channel)
        admins = _people_with_perm(project, ADMINISTER_POLICY)
        emails = [e.strip() for e in project_settings.security_emails.split(",") if e.strip()]
        notify(
            request, NotificationKind.BREAKGLASS, [u for u in admins if u.pk != requester.pk], emails=emails
        )
    return request


@transaction.atomic
def breakglass_review(*, request_id: int, reviewer: User, notes: str, channel: str) -> AccessRequest:
    request = _locked(request_id)
    if not request.is_breakglass:
        raise RequestError("request", "is not a break-glass grant")
    if request.reviewed_at is not None:
        raise RequestError("request", f"was already reviewed by {request.reviewed_by}")
    if reviewer.canonical_subject == request.requester.canonical_subject:
        raise NotAllowed("Someone other than the person who broke the glass must review it.")
    if not reviewer.has_perm(ADMINISTER_POLICY, request.project):
        raise NotAllowed("Only a project administrator can review break-glass access.")
    if not notes.strip():
        raise RequestError("notes", "say what the review found")
    request.reviewed_by, request.reviewed_at, request.review_notes = reviewer, timezone.now(), notes.strip()
    request.save(update_fields=["reviewed_by", "reviewed_at", "review_notes"])
    record_event(
        action="breakglass.reviewed",
        actor=actor_for(reviewer),
        channel=channel,
        target=_target(request),
        project=request.project.key,
        detail={"notes": request.review_notes},
    )
    return request


def notify(
    request: AccessRequest, kind: str, recipients: Iterable[User], *, emails: Iterable[str] = ()
) -> int:
    """Write the outbox rows for one announcement, in the caller's transaction, and hand them to
    Celery once it commits. Returns how many were new (a repeated announcement adds none)."""
    people = list(recipients)
    rows: list[tuple[str, User | None, str]] = []
    for user in people:
        rows.append((NotificationChannel.WEB, user, ""))
        if settings.NOTIFY_BY_EMAIL and user.email:
            rows.append((NotificationChannel.EMAIL, user, user.email))
    rows.extend((NotificationChannel.EMAIL, None, address) for address in emails)
    if settings.SLACK_ENABLED:
        from jitaccess.slack.routing import slack_destinations

        rows.extend(slack_destinations(request, kind, people))
    if kind == NotificationKind.EXPIRING and request.expires_at:
        suffix = f":{int(request.expires_at.timestamp())}"
    elif kind == NotificationKind.STATE_CHANGED:
        # Once per visible change: the new state, and within `pending` each added approval.
        suffix = f":{request.state}:{request.approvals.count()}"
    else:
        suffix = ""
    created_ids = []
    for channel, recipient, destination in rows:
        who = f"user{recipient.pk}" if recipient else destination
        notification, created = Notification.objects.get_or_create(
            dedupe_key=f"{request.pk}:{kind}{suffix}:{channel}:{who}",
            defaults={
                "request": request,
                "kind": kind,
                "channel": channel,
                "recipient": recipient,
                "destination": destination,
            },
        )
        if created:
            created_ids.append(notification.pk)
    if created_ids:
        from jitaccess.tasks import enqueue_deliveries

        transaction.on_commit(lambda: enqueue_deliveries(created_ids), robust=True)
    return len(created_ids)


def _highest_level(columns: Sequence[Column]) -> int:
    return max((c.classification_level for c in columns if c.classification_level is not None), default=-1)


def _target(request: AccessRequest) -> Target:
    return Target("request", str(request.pk), f"{request.ref} {request.scope_label}")
