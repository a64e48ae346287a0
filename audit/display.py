"""How the audit log reads to people: event names, column headings and cells on the web pages and in
the PDF summary.

Exports (CSV, JSON Lines) and the CLI keep the machine values: action codes, column names such as
`target_repr`, principal keys such as `user:2`, members as JSON. Here those become words, with the
code kept beside them (muted, and in a `title`) so a reader can still search and filter by it.

`audit` imports no other Veil app, so these labels are its own (jitaccess's request timeline uses
the same wording for request events). An action missing from `ACTION_LABELS` shows as its code.
Names come from the log too: the name an event recorded for an actor id, and the requester of the
request a grant was made for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import Max

from audit.models import AuditEvent
from audit.reports import REPORTS
from audit.reports.common import ref_key

ACTION_LABELS: dict[str, str] = {
    # Sign-in and API tokens
    "auth.sign_in": "Signed in",
    "auth.sign_out": "Signed out",
    "auth.sign_in_failed": "Sign-in failed",
    "token.created": "API token created",
    "token.revoked": "API token revoked",
    # Catalog and policy
    "catalog.upserted": "Catalog updated",
    "catalog.classification_changed": "Column classification changed",
    "semantic_type.created": "Semantic type created",
    "semantic_type.updated": "Semantic type changed",
    "semantic_type.deleted": "Semantic type deleted",
    "rule.created": "Masking rule created",
    "rule.updated": "Masking rule changed",
    "rule.deleted": "Masking rule deleted",
    "rule.reordered": "Masking rules reordered",
    "role.created": "Role created",
    "role.updated": "Role changed",
    "role.deleted": "Role deleted",
    "exemption.created": "Exemption created",
    "exemption.updated": "Exemption changed",
    "exemption.revoked": "Exemption revoked",
    "exemption.expired": "Exemption expired",
    "exemption.deleted": "Exemption deleted",
    "approval_policy.created": "Approval policy created",
    "approval_policy.updated": "Approval policy changed",
    "approval_policy.deleted": "Approval policy deleted",
    "approval_policy.reordered": "Approval policies reordered",
    "project.policy_settings_updated": "Project policy settings changed",
    "policy.version_created": "Policy version saved",
    "policy_change.submitted": "Policy change submitted for approval",
    "policy_change.applied": "Policy change approved and applied",
    "policy_change.rejected": "Policy change rejected",
    "policy_change.withdrawn": "Policy change withdrawn",
    "policy_change.superseded": "Policy change superseded",
    # Access requests and grants
    "request.created": "Access requested",
    "request.approval_recorded": "Approval recorded",
    "request.approved": "Request approved",
    "request.denied": "Request denied",
    "request.cancelled": "Request cancelled",
    "request.revoked": "Access revoked",
    "request.relinquished": "Access given up early",
    "request.expired": "Access expired",
    "request.timed_out": "Request timed out",
    "grant.created": "Grant created",
    "grant.revoked": "Grant revoked",
    "grant.expired": "Grant expired",
    "breakglass.taken": "Break-glass access taken",
    "breakglass.reviewed": "Break-glass use reviewed",
    # Slack
    "slack.user_linked": "Slack account linked",
    "slack.user_unlinked": "Slack account unlinked",
    "slack.route_changed": "Slack approval channel changed",
    "slack.forged_request": "Forged Slack request refused",
    "slack.action.refused": "Slack action refused",
    # The audit log itself
    "audit.decisions_sealed": "Unmask decisions sealed into the log",
    "audit.exported": "Audit export written",
    "audit.archived": "Old events archived",
}

COLUMN_LABELS: dict[str, str] = {
    "seq": "#",
    "occurred_at": "When (UTC)",
    "action": "Event",
    "actor_type": "Actor type",
    "actor_id": "Actor ID",
    "actor_name": "By",
    "target_type": "Object type",
    "target_id": "Object ID",
    "target_repr": "Object",
    "project": "Project",
    "channel": "Channel",
    "detail": "Details",
    "prev_hash": "Previous hash",
    "hash": "Hash",
    # Who saw unmasked data
    "recorded_at": "When (UTC)",
    "person": "Person",
    "principal_type": "Principal type",
    "principal_id": "Principal ID",
    "service_account": "Via service account",
    "query_id": "Query ID",
    "columns": "Columns",
    "reason": "Reason",
    "authorisation_id": "Grant or exemption #",
    "request": "Request",
    "request_reason": "Reason given",
    "requested_at": "Requested (UTC)",
    "approved_by": "Approved by",
    "approved_at": "Approved (UTC)",
    "duration": "Granted for",
    "expires_at": "Expires (UTC)",
    "rows_returned": "Rows returned",
    "record_id": "Decision record #",
    "decisions": "Decisions",
    "first": "First (UTC)",
    "last": "Last (UTC)",
    # In force
    "kind": "Kind",
    "id": "#",
    "principal": "Principal",
    "members": "Members",
    "condition": "Scope (condition)",
    "created_at": "Since (UTC)",
    "created_by": "Created by",
    # Policy history
    "before": "Before",
    "after": "After",
    # Break-glass
    "breakglass": "Break-glass",
    "opened_at": "Opened (UTC)",
    "status": "Status",
    "reviewed_at": "Reviewed (UTC)",
    "reviewer": "Reviewer",
    "outcome": "Outcome",
    "age": "Waiting for",
}

# Where one report uses a column name in its own sense.
REPORT_COLUMN_LABELS: dict[tuple[str, str], str] = {
    ("unmasks", "reason"): "Allowed by",  # grant or exemption
}

FILTER_LABELS: dict[str, str] = {
    "from": "From",
    "to": "To",
    "at": "In force at",
    "person": "Person",
    "role": "Role",
    "project": "Project",
    "instance": "Instance",
    "database": "Database",
    "column": "Column",
    "action": "Event type",
    "through_seq": "Up to event #",
}

# What the "reason" of an unmask and the "kind" of an authorisation read as.
_KIND_LABELS = {"grant": "Grant", "exemption": "Exemption"}
_MEMBER_KINDS = {
    "roles": "roles",
    "groups": "groups",
    "users": "users",
    "service_accounts": "service accounts",
}
_NOTHING = "—"


def action_label(code: str) -> str:
    """The words for an event type; its code when audit has none for it."""
    return ACTION_LABELS.get(code, code)


def column_label(column: str, report: str = "") -> str:
    """A report column as a heading: `target_repr` -> `Object`; unknown ones `rows_x` -> `Rows x`."""
    return (
        REPORT_COLUMN_LABELS.get((report, column))
        or COLUMN_LABELS.get(column)
        or column.replace("_", " ").capitalize()
    )


def report_title(key: str) -> str:
    """A report's title from its key (`summary` is the PDF summary)."""
    if key == "summary":
        return "Audit summary"
    spec = REPORTS.get(key)
    return spec.title if spec is not None else key


def filters_text(filters: Mapping[str, Any]) -> str:
    """Stored filters as people read them: `From 2026-01-01, Event type grant`."""
    return ", ".join(f"{FILTER_LABELS.get(k, k)} {v}" for k, v in filters.items()) or "none"


@dataclass(frozen=True)
class Cell:
    """One cell as shown: `text` to read, `code` the machine value beside it (muted, searchable),
    `note` a muted remark (such as that a name is not in the log)."""

    text: str
    code: str = ""
    note: str = ""

    @property
    def wrap(self) -> bool:
        return len(self.text) > 40


def value_text(value: Any) -> str:
    """A plain value as text: times in UTC, lists joined, mappings as `key: value; ...` (members as
    `members_text` words, other nested structures as compact JSON)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return f"{moment:%Y-%m-%d %H:%M}"
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (str, int, float)) for v in value):
            return ", ".join(str(v) for v in value)
        return _json(value)
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if key == "members":
                text = members_text(item)
            elif isinstance(item, dict):
                text = _json(item) if item else ""
            else:
                text = value_text(item)
            parts.append(f"{key}: {text or _NOTHING}")
        return "; ".join(parts)
    return str(value)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def action_cell(code: str) -> Cell:
    label = action_label(code)
    return Cell(label, code=code if label != code else "")


def members_text(members: Any, names: Mapping[str, str] | None = None) -> str:
    """An exemption's members as `roles: support-agents; users: Alice Example (local:3)`, or "—"."""
    if not isinstance(members, dict):
        return value_text(members) or _NOTHING
    names = names or {}
    parts = []
    for key, label in _MEMBER_KINDS.items():
        items = [str(v) for v in members.get(key) or []]
        if key == "users":
            items = [f"{names[v]} ({v})" if names.get(v) else v for v in items]
        if items:
            parts.append(f"{label}: {', '.join(items)}")
    for key, value in members.items():  # anything a newer producer adds
        if key not in _MEMBER_KINDS and value:
            parts.append(f"{key}: {value_text(value)}")
    return "; ".join(parts) or _NOTHING


@dataclass(frozen=True)
class Table:
    """A report as shown: headings (with the export's column name) and rows of cells."""

    columns: list[tuple[str, str]]  # (column name as exported, heading)
    rows: list[list[Cell]]


def present(key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """Rows of report `key` (in the order of `columns`) as cells for people."""
    names = _Names.for_rows(columns, rows)
    shown = []
    for row in rows:
        values = dict(zip(columns, row, strict=True))
        shown.append([_cell(key, column, values, names) for column in columns])
    return Table([(c, column_label(c, key)) for c in columns], shown)


def _cell(key: str, column: str, values: Mapping[str, Any], names: _Names) -> Cell:
    value = values[column]
    if column == "action" and isinstance(value, str):
        return action_cell(value)
    if column == "members":
        return Cell(members_text(value, names.subjects))
    if column == "principal" and value:
        return names.principal_cell(str(value), str(values.get("request") or ""))
    if column in ("kind", "reason") and key in ("in_force", "unmasks") and isinstance(value, str):
        return Cell(_KIND_LABELS.get(value, value))
    return Cell(value_text(value))


class _Names:
    """People's names as the log recorded them: per actor id (the latest name an event gave it), and
    per request (who asked, from its `request.created` event). Two indexed queries per table."""

    def __init__(self, subjects: dict[str, str], requesters: dict[str, str]) -> None:
        self.subjects = subjects
        self.requesters = requesters

    @classmethod
    def for_rows(cls, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> _Names:
        subjects: set[str] = set()
        requests: set[str] = set()
        if "members" in columns:
            at = columns.index("members")
            for row in rows:
                members = row[at] if isinstance(row[at], dict) else {}
                subjects.update(str(u) for u in members.get("users") or [])
        if "principal" in columns and "request" in columns:
            at, req = columns.index("principal"), columns.index("request")
            for row in rows:
                if str(row[at] or "").startswith("user:") and row[req]:
                    requests.add(ref_key(row[req]))
        return cls(_subject_names(subjects), _requester_names(requests))

    def principal_cell(self, principal: str, request: str) -> Cell:
        """`user:2` as the person who asked for the grant's request; `sa:etl` as a service account."""
        kind, _, name = principal.partition(":")
        if kind == "sa" and name:
            return Cell(name, code=principal, note="service account")
        requester = self.requesters.get(ref_key(request)) if request else None
        if requester:
            return Cell(requester, code=principal)
        return Cell(principal, note="key only: the log holds no name for it")


def _subject_names(subjects: set[str]) -> dict[str, str]:
    if not subjects:
        return {}
    latest = (
        AuditEvent.objects.filter(actor_id__in=sorted(subjects))
        .exclude(actor_name="")
        .values("actor_id")
        .annotate(seq=Max("seq"))
        .values_list("seq", flat=True)
    )
    return dict(AuditEvent.objects.filter(seq__in=list(latest)).values_list("actor_id", "actor_name"))


def _requester_names(request_keys: set[str]) -> dict[str, str]:
    if not request_keys:
        return {}
    return {
        target_id: name
        for target_id, name in AuditEvent.objects.filter(
            action="request.created", target_type="request", target_id__in=sorted(request_keys)
        )
        .order_by("seq")
        .values_list("target_id", "actor_name")
        if name
    }
