"""What did agents read: the access events of queries run for a service account (an AI agent
through veil-mcp, an ETL job), one row per query, with the agent's owner as the log records it.

The principal kind comes with each access event (`principal_type`: `agent` when an agent's tool
call ran the query, as veil-mcp reports it, `service_account` otherwise), with the tool call
(the tool and its arguments' JSON types, never their values) and the statement's fingerprint (a
hash of its parse tree without literals: the same query with other values shares it). The owner
is the last `service_account.created`/`updated` event about the account (a subject, shown with
the name that subject last acted under). An access event names columns, not
projects: the project of each column's database is asked of the app that owns the catalog
(`register_column_projects`), so a reader scoped to some projects sees the queries whose columns
all lie in them, and a reader of everything sees every query.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

from audit.filters import AuditFilter, AuditScope
from audit.models import AccessEvent, AuditEvent, PrincipalKind
from audit.reports.common import CHUNK, Row, chunks, current_state

AGENT_PRINCIPALS = (PrincipalKind.AGENT, PrincipalKind.SERVICE_ACCOUNT)
AGENT_COLUMNS = (
    "occurred_at",
    "agent",
    "principal_kind",
    "owner",
    "reported_by",
    "query_id",
    "tool_call",
    "fingerprint",
    "columns_in_clear",
    "columns_masked",
    "rows_returned",
)

# (instance, database) pairs -> project key; registered by the app that owns the catalog.
ColumnProjects = Callable[[Collection[tuple[str, str]]], Mapping[tuple[str, str], str]]
_column_projects: ColumnProjects | None = None


def register_column_projects(resolver: ColumnProjects) -> None:
    """Called once from the owning app's `ready()`, so audit never imports the catalog."""
    global _column_projects
    _column_projects = resolver


def _database(label: str) -> tuple[str, str]:
    instance, _, rest = label.partition("/")
    return instance, rest.partition("/")[0]


def _access_events(flt: AuditFilter) -> Iterator[tuple[Any, ...]]:
    events = AccessEvent.objects.filter(principal_type__in=AGENT_PRINCIPALS).order_by("occurred_at", "id")
    if flt.date_from:
        events = events.filter(occurred_at__gte=flt.date_from)
    if flt.date_to:
        events = events.filter(occurred_at__lt=flt.date_to)
    if flt.person:
        events = events.filter(principal__icontains=flt.person)
    return events.values_list(
        "occurred_at",
        "principal",
        "principal_type",
        "service_account",
        "query_id",
        "tool_call",
        "fingerprint",
        "unmasked_columns",
        "masked_columns",
        "row_count",
    ).iterator(chunk_size=CHUNK)


def agent_owners(names: Collection[str]) -> dict[str, str]:
    """Each account's owner as its last creation or update event says: `name (subject)`, or the
    subject alone when it never acted; empty when it has none."""
    subjects: dict[str, str] = {}
    events = (
        AuditEvent.objects.filter(
            action__in=("service_account.created", "service_account.updated"), target_repr__in=list(names)
        )
        .order_by("seq")
        .values_list("target_repr", "detail")
    )
    for name, detail in events:
        state = current_state(detail)
        if "owner" in state:
            subjects[name] = str(state["owner"] or "")
    wanted = {s for s in subjects.values() if s}
    named: dict[str, str] = {}
    if wanted:
        for subject, actor_name in (
            AuditEvent.objects.filter(actor_id__in=sorted(wanted))
            .order_by("seq")
            .values_list("actor_id", "actor_name")
        ):
            named[subject] = actor_name
    return {
        name: (f"{named[subject]} ({subject})" if subject in named else subject)
        for name, subject in subjects.items()
    }


def agent_rows(flt: AuditFilter, scope: AuditScope) -> Iterator[Row]:
    """One row per query run for a service account: when, which agent, its kind and owner, the
    layer that reported it, the tool call and statement fingerprint, the columns returned in clear
    and masked, and how many rows. With a project
    scope or filter, a query is shown only when each of its columns is of a known project allowed."""
    scoped = not scope.is_everything or bool(flt.project)
    by_column = bool(flt.instance or flt.database or flt.column)
    owners: dict[str, str] = {}
    for chunk in chunks(_access_events(flt)):
        owners.update(agent_owners({row[1] for row in chunk} - owners.keys()))
        projects: Mapping[tuple[str, str], str] = {}
        if scoped and _column_projects is not None:
            projects = _column_projects({_database(label) for row in chunk for label in (*row[7], *row[8])})
        for (
            occurred_at,
            agent,
            kind,
            reported_by,
            query_id,
            tool_call,
            fingerprint,
            clear,
            masked,
            rows,
        ) in chunk:
            labels = [*clear, *masked]
            if by_column and not any(flt.column_label_matches(label) for label in labels):
                continue
            if scoped:
                touched = {projects.get(_database(label), "") for label in labels}
                if not touched or not all(p and scope.allows_project(p) for p in touched):
                    continue
                if flt.project and touched != {flt.project}:
                    continue
            yield (
                occurred_at,
                agent,
                kind,
                owners.get(agent, ""),
                reported_by,
                query_id,
                tool_call or None,
                fingerprint,
                list(clear),
                list(masked),
                rows,
            )
