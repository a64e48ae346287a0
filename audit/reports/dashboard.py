"""Counts for the compliance dashboard, within the reader's scope."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from django.db.models import Count
from django.db.models.functions import TruncWeek
from django.utils import timezone

from audit.filters import AuditFilter, AuditScope, events_matching
from audit.models import DecisionRecord
from audit.reports.breakglass import breakglass_rows
from audit.reports.common import CHUNK, duration_text, request_key
from audit.reports.denied import denied_q
from audit.reports.unmasks import unmask_rows


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    display: str
    percent: int
    short: str = ""  # what tells this bar from the others (the label when empty)

    @property
    def shown(self) -> str:
        return self.short or self.label


def short_column_label(label: str) -> str:
    """The part of a column or scope label that tells it apart: `prod-pg/shop/public.orders.email`
    -> `orders.email`; `prod-pg/shop/public.orders (email, phone)` -> `orders (email, phone)`."""
    tail = label.rsplit("/", 1)[-1]
    head, paren, columns = tail.partition(" (")
    parts = head.split(".")
    if len(parts) >= 3 or (paren and len(parts) == 2):
        head = ".".join(parts[1:])  # without the schema
    return head + paren + columns


def _column_bars(items: Iterable[tuple[str, float]]) -> list[Bar]:
    """Bars for columns, each named by its table and column; where two would read the same (the
    same table in two databases), those keep their full label."""
    bars = _bars(items)
    shorts = [short_column_label(bar.label) for bar in bars]
    seen = Counter(shorts)
    return [
        replace(bar, short=short) if seen[short] == 1 else bar
        for bar, short in zip(bars, shorts, strict=True)
    ]


def _bars(items: Iterable[tuple[str, float]], fmt: Callable[[float], str] = lambda v: f"{v:g}") -> list[Bar]:
    items = list(items)
    top = max((value for _, value in items), default=0) or 1
    return [Bar(label, value, fmt(value), round(100 * value / top)) for label, value in items]


@dataclass(frozen=True)
class Dashboard:
    since: datetime
    unmasks_per_week: list[Bar]
    pending_breakglass: int
    top_requested_columns: list[Bar]
    top_unmasked_columns: list[Bar]
    approval_latency: list[Bar]
    latency_median: str
    latency_p90: str
    approvals: int
    denied: int


def _week_start(moment: datetime) -> datetime:
    day = moment.astimezone(UTC)
    return (day - timedelta(days=day.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)


def dashboard(scope: AuditScope, *, weeks: int = 12, now: datetime | None = None) -> Dashboard:
    """Counts for the compliance dashboard over the last `weeks` weeks, within the reader's scope."""
    now = now or timezone.now()
    since = _week_start(now) - timedelta(weeks=weeks - 1)
    flt = AuditFilter(date_from=since)
    week_counts: Counter[datetime] = Counter()
    unmasked_columns: Counter[str] = Counter()
    if scope.is_everything:
        for item in (
            DecisionRecord.objects.filter(recorded_at__gte=since)
            .annotate(week=TruncWeek("recorded_at"))
            .values("week")
            .annotate(n=Count("id"))
        ):
            week_counts[_week_start(item["week"])] += item["n"]
        for unmasked in (
            DecisionRecord.objects.filter(recorded_at__gte=since)
            .values_list("unmasked", flat=True)
            .iterator(chunk_size=CHUNK)
        ):
            unmasked_columns.update(str(e.get("column", "")) for e in unmasked)
    else:
        seen: set[int] = set()
        for row in unmask_rows(flt, scope):
            unmasked_columns.update(row[7])
            if row[18] not in seen:
                seen.add(row[18])
                week_counts[_week_start(row[0])] += 1
    weeks_axis = [since + timedelta(weeks=i) for i in range(weeks)]
    requested: Counter[str] = Counter()
    created: dict[str, datetime] = {}
    latencies: list[float] = []
    request_events = (
        events_matching(flt, scope)
        .filter(action__in=("request.created", "request.approved"))
        .values("action", "target_type", "target_id", "occurred_at", "detail")
    )
    for event in request_events.iterator(chunk_size=CHUNK):
        ref = request_key(event)
        detail = event["detail"] if isinstance(event["detail"], dict) else {}
        if event["action"] == "request.created":
            created[ref] = event["occurred_at"]
            asked_for = detail.get("columns") or ([detail["scope"]] if detail.get("scope") else [])
            requested.update(str(c) for c in asked_for)
        elif ref in created:
            latencies.append((event["occurred_at"] - created.pop(ref)).total_seconds())
    buckets = [
        ("under 5 min", 300.0),
        ("5-60 min", 3600.0),
        ("1-24 h", 86400.0),
        ("over a day", float("inf")),
    ]
    latency_counts = Counter(
        next(label for label, limit in buckets if seconds < limit) for seconds in latencies
    )
    pending = sum(1 for row in breakglass_rows(AuditFilter(), scope) if row[5] == "pending review")
    denied = events_matching(flt, scope).filter(denied_q()).count()

    def minutes(seconds: float | None) -> str:
        if seconds is None:
            return ""
        return "under a minute" if seconds < 60 else duration_text(now - timedelta(seconds=seconds), now)

    return Dashboard(
        since=since,
        unmasks_per_week=_bars((f"{w:%d %b}", week_counts[w]) for w in weeks_axis),
        pending_breakglass=pending,
        top_requested_columns=_column_bars(requested.most_common(10)),
        top_unmasked_columns=_column_bars(unmasked_columns.most_common(10)),
        approval_latency=_bars((label, latency_counts[label]) for label, _ in buckets),
        latency_median=minutes(statistics.median(latencies) if latencies else None),
        latency_p90=minutes(statistics.quantiles(latencies, n=10)[-1] if len(latencies) >= 2 else None),
        approvals=len(latencies),
        denied=denied,
    )
