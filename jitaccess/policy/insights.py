"""The feedback loop: what requests, denials, the inference guard's refusals and failed sign-ins
say about the policy.

Reads only (requests, approvals, audit events). Everything is computed over a window (default 90
days) in a few queries and plain Python, so the dashboard costs the same whatever the page shows.

Anomalies compare a principal with their own past: a day is a spike when its count is at least
`SPIKE_MIN` and above the mean plus three standard deviations of that principal's earlier days in
the window (at least `BASELINE_MIN_DAYS` of them). A quiet principal's baseline is zero, so a
burst of three stands out; a noisy one needs far more.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from audit.models import ActorType, AuditEvent
from identity.models import Role, User
from jitaccess.models import AccessRequest
from jitaccess.states import State
from masking.services.guard import GUARD_REFUSED
from masking.services.policy import grant_condition

SPIKE_MIN = 3
BASELINE_MIN_DAYS = 7
CANDIDATE_MIN_REQUESTS = 3
OVER_MASKED_MIN_APPROVED = 5
OVER_MASKED_MAX_DENIAL_RATE = 0.1


@dataclass
class RequestedColumn:
    """One column (or a whole table or database when no columns were named) and who asks for it."""

    label: str
    project: str
    instance: str
    database: str
    schema: str | None
    table: str | None
    column: str | None
    requests: int = 0
    approved: int = 0
    denied: int = 0
    roles: Counter[str] = field(default_factory=Counter)
    requesters: set[int] = field(default_factory=set)

    @property
    def role_counts(self) -> list[tuple[str, int]]:
        """For templates, which would look `most_common` up as a key of the Counter."""
        return self.roles.most_common()

    @property
    def top_role(self) -> str:
        return self.roles.most_common(1)[0][0] if self.roles else ""

    @property
    def candidate(self) -> bool:
        """Asked for often, always granted, mostly by one role: a standing exemption would do."""
        return (
            self.column is not None
            and self.requests >= CANDIDATE_MIN_REQUESTS
            and self.denied == 0
            and self.approved >= self.requests - 1
            and bool(self.top_role)
        )

    @property
    def condition(self) -> str:
        return grant_condition(
            instance=self.instance,
            database=self.database,
            schema=self.schema,
            table=self.table,
            columns=[self.column] if self.column else [],
        )


@dataclass
class RoleLoad:
    role: str
    approved: int = 0
    denied: int = 0

    @property
    def over_masked(self) -> bool:
        decided = self.approved + self.denied
        return (
            self.approved >= OVER_MASKED_MIN_APPROVED and self.denied <= decided * OVER_MASKED_MAX_DENIAL_RATE
        )


@dataclass
class PrincipalAttempts:
    principal: str
    days: list[tuple[date, int, bool]]  # (day, count, is a spike)

    @property
    def total(self) -> int:
        return sum(count for _, count, _ in self.days)

    @property
    def spikes(self) -> list[date]:
        return [day for day, _, spike in self.days if spike]


@dataclass
class Latency:
    decided: int
    median: timedelta | None
    p90: timedelta | None
    buckets: list[tuple[str, int]]
    pending: int
    oldest_pending: timedelta | None
    pending_by_project: list[tuple[str, int]]


# Every reader below takes `projects`: the keys of the projects whose requests it may count, or
# None for every project (a policy administrator of one project does not see another's requests).
Projects = frozenset[str] | set[str] | None


def _in(queryset, projects: Projects):  # type: ignore[no-untyped-def]
    return queryset if projects is None else queryset.filter(project__key__in=sorted(projects))


def _requests(since: datetime, projects: Projects = None):  # type: ignore[no-untyped-def]
    return _in(
        AccessRequest.objects.filter(created_at__gte=since, is_breakglass=False), projects
    ).select_related("project", "database__instance", "requester")


def roles_of_people(user_ids: Iterable[int]) -> dict[int, frozenset[str]]:
    """`role_names_of_user` of many people in two queries (held directly or through a group)."""
    ids = set(user_ids)
    held: dict[int, set[str]] = defaultdict(set)
    direct = Role.objects.filter(users__in=ids).values_list("users", "name")
    via_groups = Role.objects.filter(groups__user__in=ids).values_list("groups__user", "name")
    for user_id, name in [*direct, *via_groups]:
        held[user_id].add(name)
    return {user_id: frozenset(held[user_id]) for user_id in ids}


def requested_columns(since: datetime, limit: int = 15, projects: Projects = None) -> list[RequestedColumn]:
    """The most requested columns, with the roles of the people asking."""
    requests = list(_requests(since, projects))
    roles_of = roles_of_people(r.requester_id for r in requests)
    found: dict[tuple[str, ...], RequestedColumn] = {}
    for request in requests:
        db = request.database
        for column in request.column_names or [None]:
            key = (
                db.instance.key,
                db.name,
                request.schema_name or "",
                request.table_name or "",
                column or "",
            )
            if key not in found:
                label = request.location_label + (f".{column}" if column else " (whole scope)")
                found[key] = RequestedColumn(
                    label,
                    request.project.key,
                    db.instance.key,
                    db.name,
                    request.schema_name,
                    request.table_name,
                    column,
                )
            item = found[key]
            item.requests += 1
            item.approved += request.state in (
                State.APPROVED,
                State.EXPIRED,
                State.REVOKED,
                State.RELINQUISHED,
            )
            item.denied += request.state == State.DENIED
            item.roles.update(roles_of[request.requester_id])
            item.requesters.add(request.requester_id)
    return sorted(found.values(), key=lambda c: (-c.requests, c.label))[:limit]


def role_load(since: datetime, projects: Projects = None) -> list[RoleLoad]:
    """Approved and denied requests per role of the requester; many approvals and few denials
    suggest the role is masked more than its work needs."""
    loads: dict[str, RoleLoad] = {}
    decided = list(
        _requests(since, projects).exclude(state__in=[State.PENDING, State.CANCELLED, State.TIMED_OUT])
    )
    roles_of = roles_of_people(r.requester_id for r in decided)
    for request in decided:
        for role in roles_of[request.requester_id] or {"(no role)"}:
            load = loads.setdefault(role, RoleLoad(role))
            if request.state == State.DENIED:
                load.denied += 1
            else:
                load.approved += 1
    return sorted(loads.values(), key=lambda r: (-r.approved, r.role))


def attempts(
    since: datetime, now: datetime | None = None, limit: int = 12, projects: Projects = None
) -> list[PrincipalAttempts]:
    """Denied requests, queries the inference guard refused and failed sign-ins per principal and
    day, spikes marked. An agent's request and probes count for the agent, not its owner; a person
    is named by username (the data path names them by email). Sign-ins belong to no project: they
    are counted for a reader of every project only."""
    now = now or timezone.now()
    counts: dict[str, Counter[date]] = defaultdict(Counter)
    denied = _in(AccessRequest.objects.filter(state=State.DENIED, created_at__gte=since), projects)
    denied = denied.select_related("requester", "service_account")
    for request in denied:
        who = request.service_account.name if request.service_account else request.requester.username
        counts[who][timezone.localdate(request.decided_at or request.created_at)] += 1
    refusals = AuditEvent.objects.filter(action=GUARD_REFUSED, occurred_at__gte=since)
    if projects is not None:
        refusals = refusals.filter(project__in=sorted(projects))
    refused = list(refusals.values_list("actor_type", "actor_id", "occurred_at"))
    people = usernames_of({actor for kind, actor, _ in refused if kind == ActorType.USER})
    for kind, actor, occurred_at in refused:
        counts[people.get(actor, actor) if kind == ActorType.USER else actor][
            timezone.localdate(occurred_at)
        ] += 1
    sign_ins = AuditEvent.objects.filter(action="auth.sign_in_failed", occurred_at__gte=since)
    if projects is not None:
        sign_ins = sign_ins.none()
    failed = sign_ins.values_list("occurred_at", "detail")
    for occurred_at, detail in failed:
        # One event per failure, or one per window listing the (address, username) counts (audit.failures).
        for row in detail.get("sources") or [detail]:
            counts[str(row.get("username") or "(blank)")][timezone.localdate(occurred_at)] += int(
                row.get("count", 1)
            )
    first, last = timezone.localdate(since), timezone.localdate(now)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    series = [PrincipalAttempts(name, _mark_spikes(days, per_day)) for name, per_day in counts.items()]
    return sorted(series, key=lambda s: (-len(s.spikes), -s.total, s.principal))[:limit]


def usernames_of(names: Iterable[str]) -> dict[str, str]:
    """Each of `names` that is a person's email or username, mapped to the username. One query."""
    wanted = set(names)
    if not wanted:
        return {}
    found = list(
        User.objects.filter(Q(email__in=wanted) | Q(username__in=wanted)).values_list("email", "username")
    )
    return {**{username: username for _, username in found}, **dict(found)}


def _mark_spikes(days: list[date], per_day: Counter[date]) -> list[tuple[date, int, bool]]:
    marked = []
    for index, day in enumerate(days):
        count = per_day.get(day, 0)
        history = [per_day.get(d, 0) for d in days[:index]]
        spike = False
        if len(history) >= BASELINE_MIN_DAYS and count >= SPIKE_MIN:
            mean = statistics.fmean(history)
            # Counts are noisy even when a baseline happens to be flat: never assume less spread
            # than a Poisson count with that mean has.
            spread = max(statistics.pstdev(history), math.sqrt(mean))
            spike = count > mean + 3 * spread
        marked.append((day, count, spike))
    return marked


def latency(since: datetime, now: datetime | None = None, projects: Projects = None) -> Latency:
    """How long decisions take, and what is still waiting."""
    now = now or timezone.now()
    decided = (
        _requests(since, projects)
        .filter(decided_at__isnull=False)
        .exclude(state=State.PENDING)
        .annotate(approvals_count=Count("approvals"))
    )
    waits = sorted(
        r.decided_at - r.created_at for r in decided if r.approvals_count or r.state == State.DENIED
    )
    edges = [
        ("< 15 min", timedelta(minutes=15)),
        ("< 1 h", timedelta(hours=1)),
        ("< 4 h", timedelta(hours=4)),
        ("< 1 day", timedelta(days=1)),
    ]
    buckets = []
    remaining = list(waits)
    for label, edge in edges:
        buckets.append((label, sum(1 for w in remaining if w < edge)))
        remaining = [w for w in remaining if w >= edge]
    buckets.append(("≥ 1 day", len(remaining)))
    pending = _in(AccessRequest.objects.filter(state=State.PENDING), projects)
    oldest = pending.order_by("created_at").values_list("created_at", flat=True).first()
    by_project = pending.values_list("project__key").annotate(n=Count("id")).order_by("-n")
    return Latency(
        decided=len(waits),
        median=waits[len(waits) // 2] if waits else None,
        p90=waits[min(len(waits) - 1, int(len(waits) * 0.9))] if waits else None,
        buckets=buckets,
        pending=pending.count(),
        oldest_pending=now - oldest if oldest else None,
        pending_by_project=[(key, n) for key, n in by_project],
    )
