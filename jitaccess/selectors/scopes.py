"""What a request's scope covers and may be given: its catalog columns, which of them are masked
for the person now (as the decision path answers), the longest duration the project and the
matching approval policy allow, and whether an extension may be asked. `request_create` and
`breakglass_take` enforce these; the request form and the Slack modal ask them first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from identity.models import ServiceAccount, User
from identity.selectors import role_names_of_user
from jitaccess.errors import RequestError
from jitaccess.formatting import duration_label, moment_label
from jitaccess.models import AccessRequest, ApprovalPolicy, ProjectAccessSettings
from jitaccess.policy.matching import match_approval_policy
from jitaccess.selectors.requests import grants_in_force
from jitaccess.states import State
from masking.decisions.engine import Decision
from masking.models import Column, Database, Project
from masking.selectors import columns_visible_to


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


def access_settings(project: Project) -> ProjectAccessSettings:
    """The project's limits, without creating a row on a read (an unsaved row carries the defaults)."""
    saved = ProjectAccessSettings.objects.filter(project=project).first()
    return saved or ProjectAccessSettings(project=project)


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
        "ticket_required": settings.ticket_required,
        "ticket_pattern": settings.ticket_pattern,
        "ticket_hint": settings.ticket_hint,
        "ticket_in_jira": settings.ticket_in_jira,
    }


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
    return longest_allowed(requester, scope, highest_level(scope_columns(scope)), project_settings)


def longest_allowed(
    requester: User, scope: Scope, level: int, project_settings: ProjectAccessSettings
) -> DurationLimit:
    """The longest duration the policy matching it allows, named after the cap that stops longer.

    A condition may read `request.duration_hours`, so the policy, and its cap, can change with the
    duration: start at the project's cap and step down to each matched policy's cap until one
    allows itself (the caps strictly decrease, so this ends). When a policy refused a longer one,
    its condition may stop matching before its cap: bisect, in whole hours, between the longest
    allowed so far and the shortest refused. The answer is always a duration that is allowed."""
    variables = policy_variables(requester, scope, level)

    def limit_at(duration: timedelta) -> DurationLimit:
        matched = match_approval_policy(
            project=scope.database.project,
            variables={**variables, "duration_hours": duration.total_seconds() / 3600},
        )
        return limit_under(project_settings, matched)

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


def limit_under(project_settings: ProjectAccessSettings, policy: ApprovalPolicy | None) -> DurationLimit:
    """The cap a request matching `policy` (None: no policy matched) has in the project."""
    cap = policy.max_duration if policy is not None else None
    if policy is not None and cap and cap < project_settings.max_duration:
        return DurationLimit(cap, policy.title)
    return DurationLimit(project_settings.max_duration)


def policy_variables(requester: User, scope: Scope, level: int) -> dict[str, Any]:
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


def scope_columns(scope: Scope) -> list[Column]:
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


def highest_level(columns: Sequence[Column]) -> int:
    return max((c.classification_level for c in columns if c.classification_level is not None), default=-1)


def check_something_masked(
    requester: User,
    service_account: ServiceAccount | None,
    scope: Scope,
    columns: Sequence[Column],
    *,
    to: str = "request",
) -> None:
    """Refuse (`RequestError` on `scope`) a scope whose columns (`scope_columns`) the principal
    already sees in clear, saying why (`to`: "request", or "break the glass for")."""
    principal = {"service_account": service_account.name} if service_account else {"user": requester.username}
    if not _masked_for(principal, columns):
        raise RequestError("scope", _nothing_masked(requester, service_account, scope, to=to))


def _masked_for(principal: Mapping[str, str], columns: Sequence[Column]) -> list[Column]:
    """The columns of a scope (`scope_columns`, one database's) that the principal would see
    masked right now."""
    if not columns:
        return []
    visible = columns_visible_to(principal, columns[0].table.schema.database, columns)
    return [c for c in columns if not (c.pk in visible and visible[c.pk].unmask)]


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


def columns_unmasked_for(user: User, database: Database, columns: Sequence[Column]) -> set[int]:
    """Which of a database's columns the person already sees in clear (an exemption, a live grant,
    a rule or classification that does not mask them), so the request form can say so. Columns are
    those of `database`, with their table and schema loaded."""
    return {pk for pk, decision in column_decisions_for(user, database, columns).items() if decision.unmask}


def column_decisions_for(user: User, database: Database, columns: Sequence[Column]) -> dict[int, Decision]:
    """Each column's answer for the person right now (by column id), as the decision path gives it,
    with its reason: the request form says what is masked for them and why. Empty when Veil does
    not know the person (everything is then masked)."""
    return columns_visible_to({"user": user.username}, database, columns)


def extension_refusal(
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
