"""The "What did agents read" report as a PDF for auditors (reportlab, as the summary in
`audit.pdf`): the scope and the chain verification, one line per agent (its kind and owner, how
many queries, rows, queries the inference guard refused, and the columns it got in clear and
masked), then the queries themselves, capped at `MAX_ROWS` like every PDF table (the CSV and
JSON Lines exports hold every row, and the PDF says how many it left out).

One pass over the report's rows: the per-agent lines are summed while the first rows are kept;
one more query counts the guard's refusals from the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from django.db.models import Count
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer

from audit.display import Cell, tool_call_text
from audit.filters import AuditFilter, AuditScope
from audit.models import ActorType, AuditEvent, PrincipalKind
from audit.pdf import MAX_ROWS, _section, _styles, _table, cover, render
from audit.reports import AGENT_COLUMNS, agent_rows
from audit.selectors import ChainVerification

TITLE = "What did agents read"
_AT = {name: index for index, name in enumerate(AGENT_COLUMNS)}


@dataclass
class _Agent:
    """What one agent did in the period, summed from its queries."""

    name: str
    kinds: set[str] = field(default_factory=set)
    owner: str = ""
    queries: int = 0
    rows: int = 0
    refused: int = 0
    clear: set[str] = field(default_factory=set)
    masked: set[str] = field(default_factory=set)

    def add(self, row: tuple[Any, ...]) -> None:
        self.kinds.add(str(row[_AT["principal_kind"]]))
        self.owner = self.owner or str(row[_AT["owner"]] or "")
        self.queries += 1
        self.rows += int(row[_AT["rows_returned"]] or 0)
        self.clear.update(row[_AT["columns_in_clear"]])
        self.masked.update(row[_AT["columns_masked"]])

    def cells(self) -> tuple[Any, ...]:
        kinds = ", ".join(_kind(k) for k in sorted(self.kinds))
        return (
            self.name,
            kinds,
            self.owner,
            self.queries,
            self.rows,
            self.refused,
            sorted(self.clear),
            sorted(self.masked),
        )


def _kind(value: str) -> str:
    return str(PrincipalKind(value).label) if value in PrincipalKind.values else value


def _query_cells(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return (
        row[_AT["occurred_at"]],
        row[_AT["agent"]],
        _kind(str(row[_AT["principal_kind"]])),
        Cell(tool_call_text(row[_AT["tool_call"]])),
        row[_AT["fingerprint"]],
        row[_AT["columns_in_clear"]],
        row[_AT["columns_masked"]],
        row[_AT["rows_returned"]],
    )


def summarize(rows: Iterable[tuple[Any, ...]]) -> tuple[list[_Agent], list[tuple[Any, ...]], int]:
    """Per-agent sums (by agent name), the first `MAX_ROWS` queries and how many more there were."""
    agents: dict[str, _Agent] = {}
    shown: list[tuple[Any, ...]] = []
    more = 0
    for row in rows:
        name = str(row[_AT["agent"]])
        agents.setdefault(name, _Agent(name)).add(row)
        if len(shown) < MAX_ROWS:
            shown.append(row)
        else:
            more += 1
    return sorted(agents.values(), key=lambda a: a.name), shown, more


def count_refusals(agents: list[_Agent], flt: AuditFilter, scope: AuditScope) -> None:
    """How many of each agent's queries the inference guard refused in the period: the guard's
    audit events about a query (`target_type` query, an action ending `.refused`), in the scope."""
    events = AuditEvent.objects.filter(
        scope.events_q(),
        target_type="query",
        action__endswith=".refused",
        actor_type=ActorType.SERVICE_ACCOUNT,
        actor_id__in=[agent.name for agent in agents],
    )
    if flt.date_from:
        events = events.filter(occurred_at__gte=flt.date_from)
    if flt.date_to:
        events = events.filter(occurred_at__lt=flt.date_to)
    if flt.project:
        events = events.filter(project=flt.project)
    counts = dict(events.values_list("actor_id").annotate(n=Count("id")).order_by())
    for agent in agents:
        agent.refused = counts.get(agent.name, 0)


def render_agents(
    *,
    flt: AuditFilter,
    scope: AuditScope,
    verification: ChainVerification,
    generated_at: datetime,
    generated_by: str,
) -> tuple[bytes, int]:
    """Render the agents report's PDF; returns its bytes and its number of pages."""
    styles = _styles()
    agents, shown, more = summarize(agent_rows(flt, scope))
    count_refusals(agents, flt, scope)
    story: list[Any] = [
        *cover(
            TITLE,
            flt,
            scope,
            generated_at,
            generated_by,
            styles,
            intro="Each query a data-access layer reported for a service account: an AI agent through "
            "veil-mcp (kind Agent, with the tool call: its arguments' types, never their values) "
            "or a job. The statement fingerprint is the same for the same query with other values.",
        ),
        Paragraph(
            f"<b>Chain verification: {'INTACT' if verification.ok else 'BROKEN'}</b>: "
            f"{escape(verification.summary())}",
            styles["body"],
        ),
        Spacer(1, 4 * mm),
        Paragraph("Per agent", styles["h2"]),
    ]
    story += _table(
        [
            "Agent",
            "Kind",
            "Owner",
            "Queries",
            "Rows returned",
            "Refused",
            "Columns in clear",
            "Columns masked",
        ],
        (agent.cells() for agent in agents),
        styles,
    )
    story += _section("Queries", styles)
    story += _table(
        ["When (UTC)", "Agent", "Kind", "Tool call", "Statement fingerprint", "In clear", "Masked", "Rows"],
        (_query_cells(row) for row in shown),
        styles,
    )
    if more:
        story.append(
            Paragraph(f"… and {more} more queries: see the CSV or JSON Lines export.", styles["small"])
        )
    return render(f"Veil: {TITLE}", story)
