"""Reads for Slack: what a request's message shows, and who a Slack account is in Veil."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet

from identity.models import User
from jitaccess.models import AccessRequest, SlackUserLink
from jitaccess.selectors.oncall import oncall_line
from jitaccess.selectors.requests import end_reason, ended_by_directory
from jitaccess.states import State
from masking.models import ClassificationLevel, Column

MAX_COLUMNS_SHOWN = 20


@dataclass(frozen=True)
class ColumnLine:
    name: str
    level: int | None


@dataclass(frozen=True)
class Card:
    """Everything a request's Slack message shows, loaded in one place so the blocks stay pure."""

    pk: int
    ref: str
    state: str
    requester: str
    requester_slack_id: str
    service_account: str
    instance: str
    environment: str
    database: str
    table: str  # "" for every table of the database
    columns: tuple[ColumnLine, ...]  # the named columns, or every column of the table (the first ones)
    all_columns: bool
    level: int
    duration: timedelta
    reason: str
    ticket: str  # as the requester gave it
    ticket_url: str
    ticket_title: str  # the Jira issue's title when the request was made, when Veil checked it
    ticket_status: str
    policy_title: str
    approvals_required: int
    approvers: tuple[str, ...]
    created_at: datetime
    pending_until: datetime
    decided_at: datetime | None
    expires_at: datetime | None
    ended_at: datetime | None
    ended_by: str
    deny_reason: str
    web_confirm: bool
    link: str
    extend_link: str
    end_reason: str = ""  # why the grant was revoked, when the revoker said
    deactivated: str = ""  # the requester, when the directory's deactivation of them ended it
    extends: str = ""  # the ref of the grant an extension adds time to
    extends_until: datetime | None = None  # when that grant ends, and this one would start
    column_count: int = 0  # how many columns `columns` stands for: it lists MAX_COLUMNS_SHOWN at most
    oncall: str = ""  # who on call may approve, or which on-call shift approved it at once
    stages: tuple[str, ...] = ()  # the names of the request's approval stages, in order; () without
    stage: int = 1  # the stage waiting (or that decided), from 1
    stage_approvers: tuple[str, ...] = ()  # who approved at that stage (everyone, without stages)

    @property
    def level_label(self) -> str:
        return level_label(self.level if self.level >= 0 else None)


def level_label(level: int | None) -> str:
    return ClassificationLevel(level).label if level is not None else "unclassified"


def needs_web_confirmation(request: AccessRequest) -> bool:
    """A Slack click proves a Slack identity, not an IdP session with MFA: from
    `SLACK_WEB_CONFIRM_LEVEL` up, and for scopes with any column nobody has classified (its level
    is unknown, so it may be the highest), the approver confirms in the web UI."""
    if request.classification_level < 0 or request.classification_level >= settings.SLACK_WEB_CONFIRM_LEVEL:
        return True
    return _scope_columns(request).filter(classification_level__isnull=True).exists()


def _scope_columns(request: AccessRequest) -> QuerySet[Column]:
    """The catalogued columns a request covers."""
    columns = Column.objects.filter(table__schema__database=request.database_id, discovered_by_decision=False)
    if request.schema_name is not None:
        columns = columns.filter(table__schema__name=request.schema_name)
    if request.table_name:
        columns = columns.filter(table__name=request.table_name)
    if request.column_names:
        columns = columns.filter(name__in=request.column_names)
    return columns


def request_link(request_id: int) -> str:
    """The request's page in Veil, where anything Slack cannot do is done."""
    return f"{settings.SITE_URL}/requests/{request_id}/"


def card_for(request_id: int) -> Card:
    """Loads the request afresh, so a message rendered now shows the state committed now."""
    request = AccessRequest.objects.select_related(
        "requester", "service_account", "database__instance", "ended_by", "extends"
    ).get(pk=request_id)
    columns = _scope_columns(request)
    table = ""
    lines: tuple[ColumnLine, ...] = ()
    column_count = 0
    if request.table_name:
        table = f"{request.schema_name}.{request.table_name}" if request.schema_name else request.table_name
        shown = columns.order_by("name").values_list("name", "classification_level")[:MAX_COLUMNS_SHOWN]
        lines = tuple(ColumnLine(name, level) for name, level in shown)
        column_count = len(lines) if len(lines) < MAX_COLUMNS_SHOWN else columns.count()
    given = list(request.approvals.select_related("approver"))
    approvers = tuple(str(a.approver) for a in given)
    return Card(
        pk=request.pk,
        ref=request.ref,
        state=request.state,
        requester=str(request.requester),
        requester_slack_id=linked_slack_id(request.requester),
        service_account=request.service_account.name if request.service_account else "",
        instance=request.database.instance.key,
        environment=request.database.instance.environment,
        database=request.database.name,
        table=table,
        columns=lines,
        all_columns=not request.column_names,
        level=request.classification_level,
        duration=request.duration,
        reason=request.reason,
        ticket=request.ticket,
        ticket_url=request.ticket_url,
        ticket_title=request.ticket_title,
        ticket_status=request.ticket_status,
        policy_title=request.policy_title,
        approvals_required=request.approvals_required,
        approvers=approvers,
        created_at=request.created_at,
        pending_until=request.pending_until,
        decided_at=request.decided_at,
        expires_at=request.expires_at,
        ended_at=request.ended_at,
        ended_by=str(request.ended_by) if request.ended_by else "",
        deny_reason=request.deny_reason,
        web_confirm=needs_web_confirmation(request),
        link=request_link(request.pk),
        extend_link=f"{settings.SITE_URL}/requests/new/?extends={request.pk}",
        end_reason=end_reason(request) if request.state == State.REVOKED else "",
        deactivated=str(request.requester) if ended_by_directory(request) else "",
        extends=request.extends.ref if request.extends else "",
        extends_until=request.extends.expires_at if request.extends else None,
        column_count=column_count,
        oncall=oncall_line(request),
        stages=tuple(str(stage["name"]) for stage in request.stages),
        stage=request.stage,
        stage_approvers=tuple(str(a.approver) for a in given if a.stage == request.stage),
    )


def linked_user(slack_user_id: str) -> User | None:
    """The Veil user a Slack account is linked to, if the link still holds. Database only."""
    link = SlackUserLink.objects.select_related("user").filter(slack_user_id=slack_user_id).first()
    return link.user if link is not None and link.is_valid else None


def linked_slack_id(user: User) -> str:
    """The newest valid link of a user's, or "". Database only."""
    for link in SlackUserLink.objects.select_related("user").filter(user=user).order_by("-created_at"):
        if link.is_valid:
            return link.slack_user_id
    return ""
