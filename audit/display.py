"""How the audit log reads to people: event names, column headings and cells on the web pages and in
the PDF summary.

Exports (CSV, JSON Lines) and the CLI keep the machine values: action codes, column names such as
`target_repr`, principal keys such as `user:2`, members as JSON. Here those become words, with the
code kept beside them (muted, and in a `title`) so a reader can still search and filter by it.

`audit` imports no other Veil app: each app declares its event types and their words in its
`events.py` and registers them at start-up (`audit.events`). An action missing from `ACTION_LABELS`
shows as its code.
Names come from the log too: the name an event recorded for an actor id, and the requester of the
request a grant was made for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Max

from audit.events import event_labels
from audit.models import AuditEvent, Channel, PrincipalKind
from audit.reports import REPORTS
from audit.reports.common import parse_time, ref_key

# Every app's event types and their words, registered at start-up (`audit.events`).
ACTION_LABELS: Mapping[str, str] = event_labels()


def event_types() -> tuple[tuple[str, str], ...]:
    """The event-type filter's choices: (code, name), by code."""
    return tuple(sorted(ACTION_LABELS.items()))


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
    # What did agents read
    "principal_kind": "Kind",
    "reported_by": "Reported by",
    "tool_call": "Tool call",
    "fingerprint": "Statement fingerprint",
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
_REQUEST_REF = re.compile(r"^REQ-\d+$")


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
    """Stored filters as people read them: `From 1 Jan 2026, Event type grant`."""
    return ", ".join(f"{FILTER_LABELS.get(k, k)} {_filter_value(k, v)}" for k, v in filters.items()) or "none"


def _filter_value(key: str, value: Any) -> str:
    """A stored period end as a date: `from` midnight is that day; `to` and `at` are stored as the
    next midnight (the end of the day asked for), so they read as the day asked for."""
    if key not in ("from", "to", "at"):
        return str(value)
    moment = value if isinstance(value, datetime) else parse_time(value)
    if moment is None:
        return str(value)
    moment = moment.astimezone(UTC)
    if (moment.hour, moment.minute, moment.second, moment.microsecond) != (0, 0, 0, 0):
        return f"{_day(moment)} {moment:%H:%M} UTC"
    if key == "from":
        return _day(moment)
    day = _day(moment - timedelta(days=1))
    return day if key == "to" else f"the end of {day}"


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment:%b %Y}"


# What the objects of events are, in words (target_type codes; unknown ones read as `Foo bar`).
OBJECT_TYPE_LABELS: dict[str, str] = {
    "masking_rule": "Masking rule",
    "approval_policy": "Approval policy",
    "semantic_type": "Semantic type",
    "policy_change": "Policy change",
    "policy_version": "Policy version",
    "project": "Project settings",
    "request": "Request",
    "grant": "Grant",
    "exemption": "Exemption",
    "role": "Role",
    "column": "Column",
    "instance": "Instance",
    "token": "API token",
    "api_token": "API token",
    "service_account": "Service account",
    "export": "Export",
}

# Event families (the part of an action before the dot) for counts.
FAMILY_LABELS: dict[str, str] = {
    "auth": "Sign-in",
    "token": "API token",
    "service_account": "Service account",
    "catalog": "Catalog",
    "semantic_type": "Semantic type",
    "rule": "Masking rule",
    "role": "Role",
    "exemption": "Exemption",
    "approval_policy": "Approval policy",
    "project": "Project settings",
    "policy": "Policy version",
    "policy_change": "Policy change",
    "request": "Access request",
    "grant": "Grant",
    "breakglass": "Break-glass",
    "slack": "Slack",
    "audit": "Audit log",
}


def object_type_label(code: str) -> str:
    return OBJECT_TYPE_LABELS.get(code) or code.replace("_", " ").capitalize()


def family_label(family: str) -> str:
    """An event family for counts: `approval_policy` -> `Approval policy events`."""
    return f"{FAMILY_LABELS.get(family) or family.replace('_', ' ').capitalize()} events"


def channel_label(code: str) -> str:
    return dict(Channel.choices).get(code, code)


def seconds_text(seconds: float) -> str:
    """A duration in seconds as words: 86400 -> `1 day`, 5400 -> `1 hour 30 minutes`."""
    if seconds < 0:
        return str(seconds)
    left = int(seconds)
    parts = []
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts[:2]) or "0 seconds"


_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


def position_text(position: int) -> str:
    """A 0-based position in an ordered policy as people count: 0 -> `first`, 11 -> `12th`."""
    if 0 <= position < len(_ORDINALS):
        return _ORDINALS[position]
    n = position + 1
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _detail_item(key: str, item: Any) -> tuple[str, str]:
    """One key of a recorded before/after/detail as words: durations in seconds and positions."""
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        return key, ""
    if key.endswith("_s"):
        return key[:-2].replace("_", " "), seconds_text(item)
    if key == "position" and isinstance(item, int):
        return key, position_text(item)
    return key, ""


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
            key, words = _detail_item(key, item)
            if words:
                text = words
            elif key == "members":
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
    request = str(values.get("request") or "")
    if column == "action" and isinstance(value, str):
        return action_cell(value)
    if column == "members":
        return Cell(members_text(value, names.subjects))
    if column == "principal" and value:
        return names.principal_cell(str(value), request)
    if column in ("kind", "reason") and key in ("in_force", "unmasks") and isinstance(value, str):
        if column == "reason" and not value and values.get("kind") == "grant" and request:
            return names.reason_cell(request)
        return Cell(_KIND_LABELS.get(value, value))
    if column == "created_by" and values.get("kind") == "grant" and request:
        return names.created_by_cell(value_text(value), request)
    if column == "target_type" and isinstance(value, str) and value:
        label = object_type_label(value)
        return Cell(label, code=value if label != value else "")
    if column == "actor_id" and isinstance(value, str) and value:
        name = str(values.get("actor_name") or "") or names.subjects.get(value, "")
        return Cell(name, code=value) if name and name != value else Cell(value)
    if column == "channel" and isinstance(value, str) and value:
        label = channel_label(value)
        return Cell(label, code=value if label != value else "")
    if column == "principal_kind" and isinstance(value, str) and value:
        kind = PrincipalKind(value).label if value in PrincipalKind.values else value
        return Cell(str(kind), code=value if kind != value else "")
    if column == "tool_call":
        return Cell(tool_call_text(value))
    return Cell(value_text(value))


def tool_call_text(value: Any) -> str:
    """A tool call as its signature reads: `query(sql: string, max_rows: integer)`; never values."""
    if not isinstance(value, dict) or not value.get("tool"):
        return ""
    arguments = value.get("arguments")
    if not isinstance(arguments, dict):
        arguments = {}
    return f"{value['tool']}({', '.join(f'{name}: {kind}' for name, kind in arguments.items())})"


@dataclass(frozen=True)
class _Request:
    """What the log says about a request when it was made: who asked, why, and whether it was
    break-glass (taken without an approver)."""

    requester: str
    reason: str
    breakglass: bool


class _Names:
    """People's names as the log recorded them: per actor id (the latest name an event gave it), and
    per request (who asked and why, from its `request.created` or `breakglass.taken` event). Two
    indexed queries per table."""

    def __init__(self, subjects: dict[str, str], requests: dict[str, _Request]) -> None:
        self.subjects = subjects
        self.requests = requests

    @classmethod
    def for_rows(cls, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> _Names:
        subjects: set[str] = set()
        requests: set[str] = set()
        if "members" in columns:
            at = columns.index("members")
            for row in rows:
                members = row[at] if isinstance(row[at], dict) else {}
                subjects.update(str(u) for u in members.get("users") or [])
        if "actor_id" in columns:
            at = columns.index("actor_id")
            subjects.update(str(row[at]) for row in rows if row[at])
        if "request" in columns:
            req = columns.index("request")
            requests.update(ref_key(row[req]) for row in rows if row[req])
        return cls(_subject_names(subjects), _request_facts(requests))

    def principal_cell(self, principal: str, request: str) -> Cell:
        """`user:2` as the person who asked for the grant's request; `sa:etl` as a service account."""
        kind, _, name = principal.partition(":")
        if kind == "sa" and name:
            return Cell(name, code=principal, note="service account")
        facts = self.requests.get(ref_key(request)) if request and kind == "user" else None
        if facts and facts.requester:
            return Cell(facts.requester, code=principal)
        return Cell(principal, note="key only: the log holds no name for it")

    def reason_cell(self, request: str) -> Cell:
        """A grant's reason: the one given for its request."""
        facts = self.requests.get(ref_key(request))
        if facts is None or not facts.reason:
            return Cell("")
        return Cell(facts.reason, note=f"given for {request}")

    def created_by_cell(self, created_by: str, request: str) -> Cell:
        """Who made a grant; a break-glass grant has no approver (Veil makes it when it is taken)."""
        facts = self.requests.get(ref_key(request))
        if facts is None or not facts.breakglass:
            return Cell(created_by)
        taken = f" by {facts.requester}" if facts.requester else ""
        return Cell(f"Break-glass{taken}", note="no approver: Veil made the grant when it was taken")


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


def _request_facts(request_keys: set[str]) -> dict[str, _Request]:
    """Per request key, from the event that opened it: `request.created` or, for break-glass (which
    records no `request.created`), `breakglass.taken`; both are recorded by the requester."""
    if not request_keys:
        return {}
    found: dict[str, _Request] = {}
    for target_id, action, name, detail in (
        AuditEvent.objects.filter(
            action__in=("request.created", "breakglass.taken"),
            target_type="request",
            target_id__in=sorted(request_keys),
        )
        .order_by("seq")
        .values_list("target_id", "action", "actor_name", "detail")
    ):
        if target_id in found:
            continue
        reason = detail.get("reason") if isinstance(detail, dict) else ""
        found[target_id] = _Request(name or "", str(reason or ""), action == "breakglass.taken")
    return found


# How a request ended, as `request.<state>` events say; a grant's revocation through its request is
# recorded just before one of them, by the same actor, in the same transaction.
_REQUEST_ENDINGS = ("request.revoked", "request.relinquished", "request.expired", "request.cancelled")
_SAME_CHANGE_SECONDS = 60


@dataclass(frozen=True)
class EventRow:
    """One row of the event list: the event, what it is about, and (for a grant revoked through its
    request) the request event that says how it ended."""

    event: AuditEvent
    target: Cell
    ended_by: AuditEvent | None = None


def event_target(event: AuditEvent) -> Cell:
    """What an event is about. A grant reads as `grant #12 (REQ-4)`: its recorded `target_repr` is
    the request's reason on revocation, which is not the object. Others read as their recorded name,
    with the object type and id as the code."""
    detail = event.detail if isinstance(event.detail, dict) else {}
    kind, ident = event.target_type, event.target_id
    if kind in ("grant", "exemption") and ident:
        request = str(detail.get("request") or "")
        if kind == "grant" and not request and _REQUEST_REF.match(event.target_repr or ""):
            request = event.target_repr  # grant.created names its request as the target
        text = f"{kind} #{ident}" + (f" ({request})" if request else "")
        recorded = event.target_repr or ""
        if kind == "exemption" and recorded:
            return Cell(f"{text}: {recorded}")
        # What the event recorded as the grant's name (its reason, on revocation) stays in the title.
        return Cell(text, code=recorded if recorded not in ("", request) else "")
    if not kind and not ident:
        return Cell(event.target_repr)
    text = event.target_repr or ident
    code = f"{kind} {ident}".strip()
    return Cell(text, code=code if code != text else "")


def event_rows(events: Sequence[AuditEvent]) -> list[EventRow]:
    """The event list's rows; one query finds how the revoked grants' requests ended."""
    revoked = [e for e in events if e.action == "grant.revoked" and isinstance(e.detail, dict)]
    keys = {ref_key(e.detail.get("request")) for e in revoked if e.detail.get("request")}
    endings: dict[str, list[AuditEvent]] = {}
    if keys:
        for ending in AuditEvent.objects.filter(
            action__in=_REQUEST_ENDINGS,
            target_type="request",
            target_id__in=sorted(keys),
            seq__gt=min(e.seq for e in revoked),
        ).order_by("seq"):
            endings.setdefault(ending.target_id, []).append(ending)
    rows = []
    for event in events:
        ended_by = None
        if event in revoked and event.detail.get("request"):
            ended_by = next(
                (
                    e
                    for e in endings.get(ref_key(event.detail["request"]), [])
                    if e.seq > event.seq
                    and e.actor_id == event.actor_id
                    and e.project == event.project
                    and (e.occurred_at - event.occurred_at).total_seconds() <= _SAME_CHANGE_SECONDS
                ),
                None,
            )
        rows.append(EventRow(event, event_target(event), ended_by))
    return rows
