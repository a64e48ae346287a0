"""Reads of requests: who sees which (every page and API goes through `requests_visible_to`), the
approval queue, the inbox, grants in force and the extensions asked for them."""

from __future__ import annotations

import re

from django.db.models import CharField, OuterRef, Q, QuerySet, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone
from guardian.shortcuts import get_objects_for_user

from audit.models import AuditEvent
from identity.models import User
from identity.selectors import role_names_of_user
from jitaccess.models import AccessRequest, ApprovalPolicy, Notification, NotificationChannel
from jitaccess.selectors.approvers import ApproverPools, can_approve
from jitaccess.states import LIVE_STATES, State
from masking.models import Column, Database, Project
from masking.permissions import ADMINISTER_POLICY, APPROVE_REQUEST, REQUEST_UNMASK, VIEW_AUDIT

_OVERSIGHT_PERMS = [APPROVE_REQUEST, ADMINISTER_POLICY, VIEW_AUDIT]


def projects_overseen_by(user: User) -> QuerySet[Project]:
    """Projects where the person approves, administers or audits (and so sees every request)."""
    return get_objects_for_user(
        user, _OVERSIGHT_PERMS, klass=Project, any_perm=True, accept_global_perms=True
    )


def requests_visible_to(user: User) -> QuerySet[AccessRequest]:
    """A person sees their own requests, every request of the projects they oversee, the
    requests whose approver roles they hold (at any of their stages, asked yet or not) and those
    they approved (as on call, say). Someone on call sees a pending request waiting for them
    through `request_for` and `approval_queue`."""
    visible = Q(requester=user) | Q(project__in=projects_overseen_by(user)) | Q(approvals__approver=user)
    for role in role_names_of_user(user):
        # icontains on the JSON text works on SQLite too (JSON `contains` does not); roles are slugs.
        visible |= Q(approver_roles__icontains=f'"{role}"')
        # In a stage's role list, not just anywhere in `stages` (a stage's name is free text).
        visible |= Q(stages__iregex=rf'"approver_roles": \[[^]]*"{re.escape(role)}"')
    return (
        AccessRequest.objects.filter(visible)
        .select_related("project", "requester", "database__instance", "service_account", "grant")
        .distinct()
    )


def request_for(user: User, request_id: int) -> AccessRequest:
    """The request if the person may see it; DoesNotExist otherwise (so its existence never leaks).
    A pending request is also shown to whoever is on call for its schedule now (who may approve
    it): only then is the on-call provider asked."""
    try:
        return requests_visible_to(user).get(pk=request_id)
    except AccessRequest.DoesNotExist:
        waiting = _waiting_for_oncall().filter(pk=request_id).first()
        if waiting is None or not can_approve(waiting, user):
            raise
        return waiting


def _waiting_for_oncall() -> QuerySet[AccessRequest]:
    """Pending requests whose policy named an on-call schedule."""
    return (
        AccessRequest.objects.filter(state=State.PENDING)
        .exclude(oncall_schedule_id="")
        .select_related("project", "requester", "database__instance", "service_account", "grant")
    )


def approval_queue(user: User) -> list[AccessRequest]:
    """Pending requests the person may decide now (never their own)."""
    pending = (
        requests_visible_to(user).filter(state=State.PENDING).exclude(requester=user).order_by("created_at")
    )
    pending = pending.select_related("extends").prefetch_related("approvals")
    pools: ApproverPools = {}  # each distinct set of approvers is read once, not once per request
    queue = [r for r in pending if can_approve(r, user, pools)]
    if user.email_verified:  # on call (people are matched by verified email) for a schedule?
        seen = {r.pk for r in pending}
        waiting = _waiting_for_oncall().exclude(requester=user).exclude(pk__in=seen)
        waiting = waiting.select_related("extends").prefetch_related("approvals")
        queue += [r for r in waiting if can_approve(r, user, pools)]
        queue.sort(key=lambda r: r.created_at)
    return queue


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


def live_extension_of(request: AccessRequest) -> AccessRequest | None:
    """The extension asked for this grant and not ended (pending or approved), if any: a grant has
    at most one, and more time after it is asked on that extension."""
    return live_extensions(request).order_by("pk").first()


def live_extensions(of: AccessRequest | OuterRef) -> QuerySet[AccessRequest]:
    """The extensions of `of` (a request, or an `OuterRef` to one) pending or approved."""
    return AccessRequest.objects.filter(extends=of, state__in=LIVE_STATES)


def grants_still_in_force_beside(
    request: AccessRequest, extensions: list[AccessRequest] | None = None
) -> list[AccessRequest]:
    """The same principal's other grants in force now on the same database, outside the chain that
    ends with `request` (`extensions`: its `extensions_ending_with`, when the caller has them):
    where its columns may stay unmasked after it ends."""
    if extensions is None:
        extensions = extensions_ending_with(request)
    ending = {request.pk, *(r.pk for r in extensions)}
    in_force = grants_in_force(
        requester_id=request.requester_id,
        service_account_id=request.service_account_id,
        database_id=request.database_id,
    )
    return list(in_force.exclude(pk__in=ending).order_by("expires_at"))


def extensions_ending_with(request: AccessRequest) -> list[AccessRequest]:
    """The extensions (and theirs) that end when the grant does, as `services.grant_end` ends them:
    approved ones end, pending ones are cancelled."""
    found: list[AccessRequest] = []
    parents = [request.pk]
    while parents:
        batch = list(AccessRequest.objects.filter(extends__in=parents, state__in=LIVE_STATES).order_by("pk"))
        found += batch
        parents = [r.pk for r in batch]
    return found


def inbox(user: User, limit: int = 50) -> QuerySet[Notification]:
    """The person's web notifications, newest first; each request carries `end_reason` (see there)."""
    return (
        Notification.objects.filter(recipient=user, channel=NotificationChannel.WEB)
        .select_related(
            "request__project", "request__requester", "request__database__instance", "request__ended_by"
        )
        .annotate(end_reason=end_reason_of("request_id"))
        .order_by("-created_at")[:limit]
    )


def end_reason(request: AccessRequest) -> str:
    """Why whoever revoked (or gave up) the grant did so, as they wrote it; "" when they gave none.
    Kept in the detail of the request's audit event (`services.grant_end`)."""
    detail = _end_events(str(request.pk)).values_list("detail", flat=True).order_by("-seq").first() or {}
    return str(detail.get("reason") or "")


def end_reason_of(request_ref: str) -> Subquery:
    """`end_reason` as an annotation, for the request whose id is in the outer query's `request_ref`."""
    events = _end_events(Cast(OuterRef(request_ref), CharField())).order_by("-seq")
    return Subquery(events.annotate(reason=KeyTextTransform("reason", "detail")).values("reason")[:1])


def _end_events(request_id: object) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(
        action__in=["request.revoked", "request.relinquished"], target_type="request", target_id=request_id
    )


# The reason the directory sync records when it ends a deactivated person's requests and grants.
DIRECTORY_DEACTIVATION = "deactivated in the company directory (SCIM)"


def ended_by_directory(request: AccessRequest) -> bool:
    """Whether the request ended because the directory deactivated its requester: revoked or
    cancelled by nobody (`ended_by` empty), its event giving DIRECTORY_DEACTIVATION as the reason
    (`services.grants.requests_end_for_deactivated`). Then Slack, email and the request's page say
    so (`formatting.directory_ending`) instead of a revocation by the directory's service account."""
    if request.ended_by_id is not None or request.state not in (State.REVOKED, State.CANCELLED):
        return False
    events = AuditEvent.objects.filter(
        action=f"request.{request.state}", target_type="request", target_id=str(request.pk)
    )
    return events.order_by("-seq").values_list("detail__reason", flat=True).first() == DIRECTORY_DEACTIVATION


def unreviewed_breakglass(user: User) -> QuerySet[AccessRequest]:
    return requests_visible_to(user).filter(is_breakglass=True, reviewed_at__isnull=True)


def may_request_somewhere(user: User) -> bool:
    """Whether the person may ask for unmask in any project (`request_unmask`, as the request page
    checks it per project)."""
    if user.is_superuser:
        return True
    projects = get_objects_for_user(user, REQUEST_UNMASK, klass=Project, accept_global_perms=True)
    return projects.exists()


def may_approve_somewhere(user: User) -> bool:
    """Whether the person may be asked to approve anywhere: `approve_request` on a project, or a
    role some approval policy names as its approvers. The menu and the home page offer the
    approval queue only to them (everyone else's would always be empty)."""
    if user.is_superuser:
        return True
    if get_objects_for_user(user, APPROVE_REQUEST, klass=Project, accept_global_perms=True).exists():
        return True
    return ApprovalPolicy.objects.filter(
        Q(approver_roles__users=user) | Q(approver_roles__groups__user=user)
    ).exists()


def columns_named(databases: QuerySet[Database], labels: list[str]) -> dict[Database, list[Column]]:
    """Catalog columns named by their labels (``instance/database/schema.table.column``, as the
    data path's refusals write them), among ``databases``, grouped by database. Labels that name
    nothing there are ignored."""
    found: dict[Database, list[Column]] = {}
    for label in labels[:50]:
        parts = label.split("/", 2)
        if len(parts) != 3:
            continue
        instance, database_name, rest = parts
        names = rest.rsplit(".", 2)
        schema, table, column = (
            names if len(names) == 3 else ("", *names) if len(names) == 2 else ("", "", "")
        )
        match = (
            Column.objects.filter(
                table__schema__database__in=databases,
                table__schema__database__instance__key=instance,
                table__schema__database__name=database_name,
                table__schema__name=schema,
                table__name=table,
                name=column,
            )
            .select_related("table__schema__database")
            .first()
        )
        if match is not None:
            found.setdefault(match.table.schema.database, []).append(match)
    return found


def requestable_databases(user: User) -> QuerySet[Database]:
    """The databases of the projects where the person may ask for unmask (`request_unmask`), as
    the web form and the Slack modal offer them."""
    projects = get_objects_for_user(user, REQUEST_UNMASK, klass=Project, accept_global_perms=True)
    return (
        Database.objects.filter(project__in=projects)
        .select_related("instance", "project")
        .order_by("project__key", "instance__key", "name")
        .distinct()
    )


def requests_in_progress(user: User) -> tuple[list[AccessRequest], list[AccessRequest]]:
    """The person's own pending requests (oldest first) and the grants that unmask for them now or
    later (approved, not expired; soonest to end first): what `/veil status` lists."""
    mine = AccessRequest.objects.filter(requester=user).select_related("database__instance", "project")
    pending = list(mine.filter(state=State.PENDING).order_by("created_at").prefetch_related("approvals")[:50])
    live = list(mine.filter(state=State.APPROVED, expires_at__gt=timezone.now()).order_by("expires_at")[:50])
    return pending, live
