"""Compliance reports: read-only selectors shared by the web pages, the CLI and the exports.

Each report is reconstructed from the audit log alone (events, decision records, access events),
never from another app's tables, so it shows what the log can prove, including after the objects it
talks about were deleted. Reports work off action prefixes and `detail` fields rather than a fixed
list of actions: apps that record new kinds of events show up without a change here, as long as
they follow the conventions in docs/audit.md (a request's ref in `target_id` or `detail.request`, a
reason in `detail.reason`, ...). What the log does not hold yet shows as an empty cell.

Every report yields tuples in the order of its `columns`, lazily and in constant memory, so an
export of millions of rows streams.
"""

from __future__ import annotations

from audit.reports.access_reviews import ACCESS_REVIEW_COLUMNS, access_review_rows, campaign_summary
from audit.reports.agents import AGENT_COLUMNS, agent_rows
from audit.reports.breakglass import BREAKGLASS_COLUMNS, breakglass_rows
from audit.reports.common import ReportSpec, Row
from audit.reports.denied import DENIED_COLUMNS, denied_q, denied_rows
from audit.reports.events import EVENT_COLUMNS, event_copy_sql, event_rows
from audit.reports.in_force import IN_FORCE_COLUMNS, in_force_rows
from audit.reports.policy import POLICY_COLUMNS, policy_rows
from audit.reports.unmasks import UNMASK_COLUMNS, unmask_rows, unmask_summary

REPORTS: dict[str, ReportSpec] = {
    spec.key: spec
    for spec in (
        ReportSpec(
            "events",
            "Event log",
            "Every event matching the filters, with its chain hashes.",
            EVENT_COLUMNS,
            event_rows,
            export_copy=event_copy_sql,
        ),
        ReportSpec(
            "unmasks",
            "Who saw unmasked data",
            "Each unmask decision: person, columns, grant or exemption, approver, reason, rows returned.",
            UNMASK_COLUMNS,
            unmask_rows,
        ),
        ReportSpec(
            "in_force",
            "Grants and exemptions in force",
            "Reconstructed from their events at the chosen moment (default: end of period, else now).",
            IN_FORCE_COLUMNS,
            in_force_rows,
        ),
        ReportSpec(
            "policy",
            "Policy change history",
            "Masking rules, semantic types, classifications, roles, exemptions, approval policies and "
            "project settings, with before and after, and the policy versions and approvals behind them.",
            POLICY_COLUMNS,
            policy_rows,
        ),
        ReportSpec(
            "breakglass",
            "Break-glass reviews",
            "Each break-glass use and whether it has been reviewed.",
            BREAKGLASS_COLUMNS,
            breakglass_rows,
        ),
        ReportSpec(
            "access_reviews",
            "Access reviews",
            "Each access review opened in the period: every standing unmask access it listed, its reviewer, "
            "whether it was proposed as unused, and whether it was kept or removed, by whom and when.",
            ACCESS_REVIEW_COLUMNS,
            access_review_rows,
        ),
        ReportSpec(
            "agents",
            "What did agents read",
            "Each query run for a service account (an AI agent, a job): the agent and its owner, the columns "
            "returned in clear and masked, and the rows returned.",
            AGENT_COLUMNS,
            agent_rows,
        ),
        ReportSpec(
            "denied",
            "Denied and unauthorized attempts",
            "Refused requests, failed sign-ins, forged Slack requests.",
            DENIED_COLUMNS,
            denied_rows,
        ),
    )
}


__all__ = [
    "ACCESS_REVIEW_COLUMNS",
    "AGENT_COLUMNS",
    "EVENT_COLUMNS",
    "REPORTS",
    "ReportSpec",
    "Row",
    "access_review_rows",
    "agent_rows",
    "breakglass_rows",
    "campaign_summary",
    "denied_q",
    "denied_rows",
    "event_copy_sql",
    "event_rows",
    "in_force_rows",
    "policy_rows",
    "unmask_rows",
    "unmask_summary",
]
