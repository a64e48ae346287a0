"""The PDF summary for auditors (reportlab): scope, counts and the chain verification, then one
section per report. Sections flow one after another; a section starts a new page only when too
little of the current one is left for its heading and first rows.

Tables are capped (`MAX_ROWS`) so the PDF stays small and its memory bounded; the CSV and JSON
Lines exports hold every row, and the summary says how many rows each table left out.
"""

from __future__ import annotations

import io
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import CondPageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from audit import signing
from audit.display import (
    Cell,
    action_cell,
    channel_label,
    column_label,
    family_label,
    object_type_label,
    present,
    value_text,
)
from audit.filters import AuditFilter, AuditScope, describe, events_matching
from audit.models import AccessEvent, DecisionRecord
from audit.reports import (
    access_review_rows,
    breakglass_rows,
    campaign_summary,
    denied_rows,
    in_force_rows,
    policy_rows,
    unmask_summary,
)
from audit.reports.in_force import IN_FORCE_COLUMNS
from audit.selectors import ChainVerification

MAX_ROWS = 60
SUMMARY_NAME = "Veil audit summary"
SECTIONS = (
    "Who saw unmasked data",
    "Grants and exemptions in force",
    "Policy changes",
    "Break-glass reviews",
    "Access reviews",
    "Denied and unauthorized attempts",
)


def _styles() -> dict[str, ParagraphStyle]:
    base = getSampleStyleSheet()
    return {
        "title": base["Title"],
        "h2": base["Heading2"],
        "body": base["BodyText"],
        "cell": ParagraphStyle("cell", parent=base["BodyText"], fontSize=7.5, leading=9),
        "small": ParagraphStyle("small", parent=base["BodyText"], fontSize=8, textColor=colors.grey),
    }


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items() if v not in (None, "", [], {}))
    return str(value)


def _markup(value: Any) -> str:
    """A cell as reportlab paragraph markup: a display Cell's code and note in grey after its text."""
    if not isinstance(value, Cell):
        return escape(_text(value))[:600]
    text = escape(value.text)[:600]
    if value.code:
        text += f' <font color="#777777">{escape(value.code)}</font>'
    if value.note:
        text += f' <font color="#777777">({escape(value.note)})</font>'
    return text


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], styles: dict[str, ParagraphStyle]
) -> list[Any]:
    """A capped table, followed by a note of how many rows it left out."""
    rows_iter = iter(rows)
    shown = list(itertools.islice(rows_iter, MAX_ROWS))
    more = sum(1 for _ in rows_iter)
    if not shown:
        return [Paragraph("None in this period.", styles["body"])]
    cell = styles["cell"]
    data = [[Paragraph(f"<b>{escape(h)}</b>", cell) for h in headers]]
    data += [[Paragraph(_markup(v), cell) for v in row] for row in shown]
    table = Table(data, repeatRows=1, hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.25, colors.lightgrey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    flowables: list[Any] = [table]
    if more:
        flowables.append(
            Paragraph(f"… and {more} more rows: see the CSV or JSON Lines export.", styles["small"])
        )
    return flowables


def render_summary(
    *,
    flt: AuditFilter,
    scope: AuditScope,
    verification: ChainVerification,
    generated_at: datetime,
    generated_by: str,
) -> tuple[bytes, int]:
    """Render the summary PDF; returns its bytes and its number of pages."""
    styles = _styles()
    story: list[Any] = [
        *cover(SUMMARY_NAME, flt, scope, generated_at, generated_by, styles),
        Spacer(1, 4 * mm),
        Paragraph("Chain verification", styles["h2"]),
        Paragraph(
            f"<b>{'INTACT' if verification.ok else 'BROKEN'}</b>: {escape(verification.summary())}",
            styles["body"],
        ),
        Paragraph(
            f"Events #{verification.first_seq} to #{verification.last_seq}; last hash "
            f"{verification.last_hash}; unsealed rows: {escape(_text(verification.unsealed))}",
            styles["small"],
        ),
    ]
    story += [Paragraph(f"Warning: {escape(w)}", styles["small"]) for w in verification.warnings]
    story += [Spacer(1, 4 * mm), Paragraph("Counts in the period", styles["h2"])]
    story += _table(["What", "Count"], _counts(flt, scope), styles)

    story += _section(SECTIONS[0], styles)
    summary = ((*r[:3], _NOTHING if r[3] is None else r[3], *r[4:]) for r in unmask_summary(flt, scope))
    story += _table(["Person", "Decisions", "Columns", "Rows returned", "First", "Last"], summary, styles)

    moment = flt.moment
    story += _section(f"{SECTIONS[1]} at {_text(moment) or 'now'}", styles)
    story += _in_force_table(flt, scope, styles)

    story += _section(SECTIONS[2], styles)
    story += _table(
        ["#", "When", "Change", "By", "Object", "Project", "Before", "After"],
        (
            (
                r[0],
                r[1],
                action_cell(r[2]),
                r[3],
                _object(r[4], r[5], r[6]),
                r[7],
                value_text(r[8]),
                value_text(r[9] or r[10]),
            )
            for r in policy_rows(flt, scope)
        ),
        styles,
    )

    story += _section(SECTIONS[3], styles)
    story += _table(
        ["Break-glass", "Opened", "Person", "Project", "Reason", "Status", "Reviewed", "Reviewer", "Outcome"],
        (r[:9] for r in breakglass_rows(flt, scope)),
        styles,
    )
    story += _section(SECTIONS[4], styles)
    story += _access_reviews(flt, scope, styles)

    story += _section(SECTIONS[5], styles)
    story += _table(
        ["#", "When", "Event", "By", "Object", "Project", "Channel", "Details"],
        (
            (
                r[0],
                r[1],
                action_cell(r[2]),
                r[5] or r[4] or r[3],
                r[6],
                r[7],
                channel_label(r[8]),
                value_text(r[9]),
            )
            for r in denied_rows(flt, scope)
        ),
        styles,
    )
    return render(SUMMARY_NAME, story)


def cover(
    heading: str,
    flt: AuditFilter,
    scope: AuditScope,
    generated_at: datetime,
    generated_by: str,
    styles: dict[str, ParagraphStyle],
    intro: str = "",
) -> list[Any]:
    """A report's first lines: its heading, what it covers (period, filters, projects) and who
    made it with which signing key."""
    period = f"{_text(flt.date_from) or 'the beginning'} to {_text(flt.date_to) or 'now'}"
    return [
        Paragraph(escape(heading), styles["title"]),
        *([Paragraph(intro, styles["body"])] if intro else []),
        Paragraph(f"<b>Period:</b> {escape(period)}", styles["body"]),
        Paragraph(f"<b>Filters:</b> {escape(describe(flt))}", styles["body"]),
        Paragraph(f"<b>Projects:</b> {escape(_projects_text(flt, scope))}", styles["body"]),
        Paragraph(
            f"<b>Generated:</b> {generated_at:%Y-%m-%d %H:%M:%S} UTC by {escape(generated_by)}; "
            f"signing key {signing.current_key().key_id}",
            styles["body"],
        ),
    ]


def render(name: str, story: list[Any]) -> tuple[bytes, int]:
    """Lay out a report named `name` (its PDF title and its footer) on landscape A4; returns its
    bytes and its number of pages. `invariant=1`: the same story gives the same bytes."""
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=landscape(A4),
        leftMargin=12 * mm,
        rightMargin=12 * mm,
        topMargin=12 * mm,
        bottomMargin=14 * mm,
        title=name,
        author="Veil",
        invariant=1,
    )

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.drawString(
            12 * mm, 7 * mm, f"{name}. The signed manifest next to this file holds its SHA-256."
        )
        canvas.drawRightString(doc.pagesize[0] - 12 * mm, 7 * mm, f"Page {doc.page}")
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue(), doc.page


_NOTHING = "—"
# Room a section needs at the foot of a page for its heading and first rows; less, and it starts on
# the next page.
_SECTION_ROOM = 45 * mm


def _section(title: str, styles: dict[str, ParagraphStyle]) -> list[Any]:
    return [Spacer(1, 6 * mm), CondPageBreak(_SECTION_ROOM), Paragraph(escape(title), styles["h2"])]


def _projects_text(flt: AuditFilter, scope: AuditScope) -> str:
    """The project the summary is filtered to; without a project filter, the reader's scope."""
    if flt.project:
        return flt.project
    projects = scope.as_dict()["projects"]
    return _text(projects) if projects not in (None, "") else "all"


def _object(kind: str, ident: str, name: str) -> Cell:
    """A policy change's object: its recorded name, with its type in words."""
    label = object_type_label(kind) if kind else ""
    return Cell(name or ident, code=label)


_IN_FORCE_SHOWN = tuple(c for c in IN_FORCE_COLUMNS if c != "created_by")  # a page is narrow


def _in_force_table(flt: AuditFilter, scope: AuditScope, styles: dict[str, ParagraphStyle]) -> list[Any]:
    """Grants and exemptions in force with principals' names and readable members, as on the web."""
    rows = in_force_rows(flt, scope)
    table = present("in_force", IN_FORCE_COLUMNS, list(itertools.islice(rows, MAX_ROWS)))
    at = [IN_FORCE_COLUMNS.index(c) for c in _IN_FORCE_SHOWN]
    shown = [[cells[i] for i in at] for cells in table.rows]
    return _table([column_label(c) for c in _IN_FORCE_SHOWN], itertools.chain(shown, rows), styles)


def _counts(flt: AuditFilter, scope: AuditScope) -> list[tuple[str, int]]:
    families: Counter[str] = Counter()
    for action in events_matching(flt, scope).values_list("action", flat=True).iterator(chunk_size=5000):
        families[action.split(".", 1)[0]] += 1
    rows = [(family_label(family), n) for family, n in sorted(families.items())]
    if scope.is_everything:
        decisions = DecisionRecord.objects.all()
        accesses = AccessEvent.objects.all()
        if flt.date_from:
            decisions = decisions.filter(recorded_at__gte=flt.date_from)
            accesses = accesses.filter(occurred_at__gte=flt.date_from)
        if flt.date_to:
            decisions = decisions.filter(recorded_at__lt=flt.date_to)
            accesses = accesses.filter(occurred_at__lt=flt.date_to)
        rows += [("unmask decision records", decisions.count()), ("access events reported", accesses.count())]
    return rows


_CAMPAIGN_HEADERS = ["Review", "Project", "Opened", "Deadline", "Items", "Kept", "Removed"]
_CAMPAIGN_HEADERS += ["Removed at deadline", "Escalated", "Pending", "Proposed as unused"]


def _access_reviews(flt: AuditFilter, scope: AuditScope, styles: dict[str, ParagraphStyle]) -> list[Any]:
    """Each campaign opened in the period and how its items ended, then the items themselves."""
    campaigns = list(itertools.islice(campaign_summary(flt, scope), MAX_ROWS + 1))
    flowables = _table(_CAMPAIGN_HEADERS, campaigns, styles)
    if campaigns:
        items = (
            (r[0], r[5], r[6], r[7], r[8] or _NOTHING, r[10], r[11], r[12])
            for r in access_review_rows(flt, scope)
        )
        headers = ["Review", "Member", "Access", "Reviewer", "Last unmask", "Outcome", "Decided", "By"]
        flowables += [Spacer(1, 3 * mm), *_table(headers, items, styles)]
    return flowables
