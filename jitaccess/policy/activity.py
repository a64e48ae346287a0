"""People and agents side by side on the Insights page: what each principal tried over a window.

Three signals, each read in one aggregate query whatever the volume behind it:

* probes: queries the data path's inference guard refused (or, in a project whose guard only
  audits, ran masked) because they used a masked column to infer its values (`query.refused`,
  `query.guard_audited` audit events);
* masked reads: queries answered with columns masked (access events with rows and masked columns;
  a refusal's event has no rows and is counted as a probe instead);
* access requests, with how they ended (break-glass left out, as on the rest of the page).

A person is named by username (the data path names them by email or username, requests by
account); a service account is an **agent** when its queries came through an agent's tool call
(veil-mcp reports it) or it filed access requests (only agents do, through `request_access`),
else a plain service account (a job). Project administrators see their projects only: probes by
the event's project, masked reads whose masked columns all lie in their projects, requests by
project.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count

from audit.models import AccessEvent, ActorType, AuditEvent, PrincipalKind
from jitaccess.models import AccessRequest
from jitaccess.policy.insights import usernames_of
from jitaccess.states import State
from masking.selectors import database_projects
from masking.services.guard import GUARD_AUDITED, GUARD_REFUSED

PERSON, AGENT, SERVICE_ACCOUNT = "person", "agent", "service account"
KINDS = (PERSON, AGENT, SERVICE_ACCOUNT)
_APPROVED = (State.APPROVED, State.EXPIRED, State.REVOKED, State.RELINQUISHED)


@dataclass
class PrincipalActivity:
    """What one person or service account tried in the window."""

    principal: str
    kind: str
    probes: int = 0
    masked_reads: int = 0
    requests: int = 0
    approved: int = 0
    denied: int = 0
    pending: int = 0

    @property
    def denied_attempts(self) -> int:
        """Probes the guard stopped and requests people denied."""
        return self.probes + self.denied


@dataclass
class KindTotals:
    """The same counts summed over every principal of a kind."""

    kind: str
    principals: int = 0
    probes: int = 0
    masked_reads: int = 0
    requests: int = 0
    approved: int = 0
    denied: int = 0
    pending: int = 0

    @property
    def label(self) -> str:
        return _PLURALS[self.kind]


_PLURALS = {PERSON: "People", AGENT: "Agents", SERVICE_ACCOUNT: "Service accounts"}


class _Tally:
    def __init__(self) -> None:
        self.rows: dict[tuple[bool, str], PrincipalActivity] = {}
        self.agents: set[str] = set()

    def row(self, is_person: bool, name: str) -> PrincipalActivity:
        key = (is_person, name)
        if key not in self.rows:
            self.rows[key] = PrincipalActivity(name, PERSON if is_person else SERVICE_ACCOUNT)
        return self.rows[key]


def principal_activity(since: datetime, projects: Collection[str] | None = None) -> list[PrincipalActivity]:
    """Each principal with any probe, masked read or request since `since`, the most denied
    attempts first. `projects`: the keys the reader may see, None for every project."""
    tally = _Tally()
    _count_probes(tally, since, projects)
    _count_masked_reads(tally, since, projects)
    _count_requests(tally, since, projects)
    _name_people(tally)
    for (is_person, name), row in tally.rows.items():
        if not is_person and name in tally.agents:
            row.kind = AGENT
    return sorted(
        tally.rows.values(),
        key=lambda r: (-r.denied_attempts, -r.masked_reads, -r.requests, r.kind, r.principal),
    )


def totals_by_kind(rows: Iterable[PrincipalActivity]) -> list[KindTotals]:
    """People, agents and service accounts, each summed (a kind with nobody is left out)."""
    totals = {kind: KindTotals(kind) for kind in KINDS}
    for row in rows:
        total = totals[row.kind]
        total.principals += 1
        total.probes += row.probes
        total.masked_reads += row.masked_reads
        total.requests += row.requests
        total.approved += row.approved
        total.denied += row.denied
        total.pending += row.pending
    return [total for total in totals.values() if total.principals]


def _count_probes(tally: _Tally, since: datetime, projects: Collection[str] | None) -> None:
    events = AuditEvent.objects.filter(action__in=(GUARD_REFUSED, GUARD_AUDITED), occurred_at__gte=since)
    if projects is not None:
        events = events.filter(project__in=sorted(projects))
    grouped = events.values_list("actor_type", "actor_id", "detail__principal_kind").annotate(n=Count("id"))
    for actor_type, name, kind, count in grouped.order_by():
        tally.row(actor_type == ActorType.USER, name).probes += count
        if kind == PrincipalKind.AGENT:
            tally.agents.add(name)


def _count_masked_reads(tally: _Tally, since: datetime, projects: Collection[str] | None) -> None:
    events = AccessEvent.objects.filter(received_at__gte=since, row_count__gt=0).exclude(masked_columns=[])
    if projects is None:
        grouped = events.values_list("principal_type", "principal").annotate(n=Count("id")).order_by()
        rows: Iterable[tuple[str, str, list[str], int]] = ((k, p, [], n) for k, p, n in grouped)
    else:  # by the columns masked too, to find their projects (distinct sets are few)
        rows = list(
            events.values_list("principal_type", "principal", "masked_columns")
            .annotate(n=Count("id"))
            .order_by()
        )
        where = database_projects({_database(label) for _, _, labels, _ in rows for label in labels})
        rows = [
            row for row in rows if row[2] and all(where.get(_database(label)) in projects for label in row[2])
        ]
    for kind, name, _, count in rows:
        tally.row(kind == PrincipalKind.USER, name).masked_reads += count
        if kind == PrincipalKind.AGENT:
            tally.agents.add(name)


def _count_requests(tally: _Tally, since: datetime, projects: Collection[str] | None) -> None:
    requests = AccessRequest.objects.filter(created_at__gte=since, is_breakglass=False)
    if projects is not None:
        requests = requests.filter(project__key__in=sorted(projects))
    grouped = requests.values_list("service_account__name", "requester__username", "state").annotate(
        n=Count("id")
    )
    for agent, requester, state, count in grouped.order_by():
        row = tally.row(agent is None, agent or requester)
        if agent is not None:
            tally.agents.add(agent)
        row.requests += count
        row.approved += count if state in _APPROVED else 0
        row.denied += count if state == State.DENIED else 0
        row.pending += count if state == State.PENDING else 0


def _name_people(tally: _Tally) -> None:
    """Merge a person's rows under their username: the data path names people by email."""
    usernames = usernames_of(name for is_person, name in tally.rows if is_person)
    merged: dict[tuple[bool, str], PrincipalActivity] = {}
    for (is_person, name), row in tally.rows.items():
        if is_person:
            name = usernames.get(name, name)
            row.principal = name
        into = merged.get((is_person, name))
        if into is None:
            merged[(is_person, name)] = row
            continue
        into.probes += row.probes
        into.masked_reads += row.masked_reads
        into.requests += row.requests
        into.approved += row.approved
        into.denied += row.denied
        into.pending += row.pending
    tally.rows = merged


def _database(label: str) -> tuple[str, str]:
    instance, _, rest = label.partition("/")
    return instance, rest.partition("/")[0]
