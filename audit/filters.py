"""The filters every audit page, report and export shares, and who may see which projects.

A filter is a plain value (`AuditFilter`), parsed once from a query string, a command line or a
stored export job, so the web, the CLI and the Celery export run the very same selector code.
`AuditScope` is not a filter the user chooses: it is the set of projects the reader may audit.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils.dateparse import parse_date, parse_datetime

from audit.events import event_labels
from audit.models import AuditEvent

# Global policy objects (masking rules, semantic types, and roles, whose members decide whom every
# project's exemptions cover and who approves) apply to every project, so they belong to every
# project's policy history; other events without a project (sign-ins, tokens) do not.
GLOBAL_POLICY_PREFIXES = ("rule.", "semantic_type.", "role.")


# The filters every audit page, export, CLI command and the read API take, by their query names.
TEXT_FILTERS = ("person", "role", "project", "instance", "database", "column", "action")
FILTER_NAMES = ("from", "to", "at", *TEXT_FILTERS)


class FilterError(ValueError):
    """A filter value that cannot be understood; `field` names it, and `fields` every filter the
    message is about (`from` and `to` for a period that ends before it starts)."""

    def __init__(self, field: str, message: str, *, also: tuple[str, ...] = ()) -> None:
        self.fields = (field, *also)
        super().__init__(f"{', '.join(self.fields)}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class AuditFilter:
    """What the reader asked for. Empty strings and None mean "any".

    `date_to` is exclusive; a bare date given as `to` means the end of that day. `at` is the moment
    the "in force" report reconstructs (default: the end of the period, else now). Text filters
    match case-insensitively; `instance`, `database` and `column` match any part of a column label
    `instance/database/schema.table.column` or of the event detail; `action` is an event type, or a
    prefix when it ends with "." or has no "." (`grant` matches `grant.created` and `grant.revoked`).
    `through_seq` bounds the events to the chain as it was when an export started.
    """

    date_from: datetime | None = None
    date_to: datetime | None = None
    at: datetime | None = None
    person: str = ""
    role: str = ""
    project: str = ""
    instance: str = ""
    database: str = ""
    column: str = ""
    action: str = ""
    through_seq: int | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AuditFilter:
        """Parse `from`, `to`, `at` (ISO date or date-time) and the text filters. A period that ends
        before it starts is an error naming both ends, not an empty result."""
        text = {name: str(data.get(name) or "").strip() for name in TEXT_FILTERS}
        for name, value in text.items():
            if _CONTROL.search(value):
                # PostgreSQL refuses NUL in text, and no key, name or label holds a control character.
                raise FilterError(name, "contains a control character; type the value as plain text")
        raw_from = data.get("from") or data.get("date_from")
        raw_to = data.get("to") or data.get("date_to")
        date_from = _parse_moment("from", raw_from, end_of_day=False)
        date_to = _parse_moment("to", raw_to, end_of_day=True)
        if date_from is not None and date_to is not None and date_from >= date_to:
            raise FilterError(
                "from",
                f"the period starts ({_shown(raw_from)}) after it ends ({_shown(raw_to)}); "
                "'from' must be on or before 'to'",
                also=("to",),
            )
        return cls(
            date_from=date_from,
            date_to=date_to,
            at=_parse_moment("at", data.get("at"), end_of_day=True),
            through_seq=parse_seq(data.get("through_seq")),
            **text,
        )

    def as_dict(self) -> dict[str, str]:
        """The non-empty filters as strings (stored on export jobs and written into manifests)."""
        names = {"date_from": "from", "date_to": "to"}
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value:
                out[names.get(f.name, f.name)] = value.isoformat() if isinstance(value, datetime) else value
        return out

    @property
    def moment(self) -> datetime | None:
        return self.at or self.date_to

    def action_q(self, field: str = "action") -> Q:
        if not self.action:
            return Q()
        if self.action.endswith(".") or "." not in self.action:
            prefix = self.action.rstrip(".")
            return Q(**{field: prefix}) | Q(**{f"{field}__startswith": f"{prefix}."})
        return Q(**{field: self.action})

    def column_label_matches(self, label: str) -> bool:
        """For reports that hold column labels (`instance/database/schema.table.column`)."""
        instance, _, rest = label.partition("/")
        database, _, rest = rest.partition("/")
        if self.instance and self.instance.lower() != instance.lower():
            return False
        if self.database and self.database.lower() != database.lower():
            return False
        return not self.column or self.column.lower() in rest.lower()


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Separators of a column label `instance/database/schema.table.column`: a column filter written as
# a label or `table.column` also finds events that name the parts apart (a request's scope
# `public.customers (email, phone)`, a grant's condition `table_name == "customers"`).
_LABEL_SEPARATORS = re.compile(r"[/.]")

# Bounds for filter dates: anything outside is a typo, and moments near datetime's own limits
# overflow as soon as a day is added or a time zone applied.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_OUT_OF_RANGE = f"must be between {EARLIEST:%Y-%m-%d} and {LATEST - timedelta(days=1):%Y-%m-%d}"


def _parse_moment(name: str, raw: Any, *, end_of_day: bool) -> datetime | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, datetime):
        return _in_range(name, raw if raw.tzinfo else raw.replace(tzinfo=UTC))
    if isinstance(raw, date):
        day = raw
    else:
        value = str(raw).strip()
        try:
            day_only = parse_date(value) if len(value) == 10 else None
            moment = None if day_only else parse_datetime(value)
        except ValueError:
            day_only = moment = None
        if moment is not None:
            return _in_range(name, moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        if day_only is None:
            raise FilterError(name, f"{value!r} is not a date (YYYY-MM-DD) or an ISO date-time")
        day = day_only
    if not EARLIEST.date() <= day < LATEST.date():
        raise FilterError(name, _OUT_OF_RANGE)
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start + timedelta(days=1) if end_of_day else start


def parse_seq(raw: Any) -> int | None:
    """An event number from a query string or an option: ASCII digits that fit the column (a
    superscript "²" passes `str.isdigit` and a 30-digit one overflows), else None."""
    value = str(raw or "").strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        return None
    return int(value)


def _shown(raw: Any) -> str:
    """A filter value as the reader gave it, for a message."""
    return raw.isoformat() if isinstance(raw, (date, datetime)) else str(raw).strip()


def _in_range(name: str, moment: datetime) -> datetime:
    """The moment in UTC: an ISO offset may be up to ±23:59, PostgreSQL takes at most ±15:59."""
    if not EARLIEST <= moment < LATEST:
        raise FilterError(name, _OUT_OF_RANGE)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class AuditScope:
    """The projects a reader may audit. `projects=None` means every project and the global events."""

    projects: frozenset[str] | None = None

    @property
    def is_everything(self) -> bool:
        return self.projects is None

    def allows_project(self, project: str) -> bool:
        return self.projects is None or project in self.projects

    def events_q(self) -> Q:
        if self.projects is None:
            return Q()
        global_policy = Q(project="")
        prefix_q = Q()
        for prefix in GLOBAL_POLICY_PREFIXES:
            prefix_q |= Q(action__startswith=prefix)
        return Q(project__in=sorted(self.projects)) | (global_policy & prefix_q)

    def as_dict(self) -> dict[str, Any]:
        return {"projects": sorted(self.projects) if self.projects is not None else "all"}


EVERYTHING = AuditScope()


def check_project(flt: AuditFilter, scope: AuditScope) -> None:
    """Refuse a `project` filter that can only match nothing: a project outside the reader's scope,
    or (for readers of everything) a key no event in the log names. Raises FilterError saying so,
    with the key in another case when that is what the reader meant."""
    if not flt.project:
        return
    if scope.projects is not None:
        known: list[str] = sorted(scope.projects)
        if flt.project in scope.projects:
            return
        hint = next((p for p in known if p.lower() == flt.project.lower()), "")
        problem = f"no project {flt.project!r} in your scope (you audit {', '.join(known)})"
    else:
        if AuditEvent.objects.filter(project=flt.project).exists():
            return
        # Project keys are slugs: try the lower- and upper-case spellings (indexed, unlike iexact).
        spellings = sorted({flt.project.lower(), flt.project.upper()} - {flt.project})
        hint = (
            AuditEvent.objects.filter(project__in=spellings).values_list("project", flat=True).first() or ""
        )
        problem = f"no project {flt.project!r} in the audit log (no event names it)"
    suggestion = f"; did you mean {hint!r}?" if hint else ""
    raise FilterError("project", problem + suggestion)


# Reports whose `action` filter is an event type. Elsewhere it picks what allowed an unmask, the
# kind of authorisation in force, or a break-glass review state: `report_action` reads it for them.
EVENT_TYPE_REPORTS = ("events", "policy", "denied")
_OTHER_ACTIONS: dict[str, tuple[Callable[[str], str], tuple[str, ...]]] = {
    "unmasks": (lambda a: a.rstrip("."), ("grant", "exemption")),
    "in_force": (lambda a: a.rstrip(".").split(".")[0], ("grant", "exemption")),
    "breakglass": (lambda a: a.rsplit(".", 1)[-1], ("pending", "reviewed")),
}


def report_action(flt: AuditFilter, report: str) -> str:
    """What the `action` filter picks in `report` (`unmasks`, `in_force`, `breakglass`), where it is
    not an event type; empty when there is no action filter."""
    part, _ = _OTHER_ACTIONS[report]
    return part(flt.action) if flt.action else ""


def check_action(flt: AuditFilter, report: str, scope: AuditScope) -> None:
    """Refuse an event type (or prefix) that no event in the reader's scope has, suggesting the
    closest known one, rather than show an empty page for a typo. Only the scope is asked: whether
    another project has such events is not the reader's to learn (the answer used to tell)."""
    if not flt.action:
        return
    other = _OTHER_ACTIONS.get(report)
    if other is not None:
        part, allowed = other
        if part(flt.action) not in allowed:
            choices = " or ".join(repr(a) for a in allowed)
            raise FilterError("action", f"{flt.action!r} is not {choices}, what this report filters on")
        return
    if report not in EVENT_TYPE_REPORTS:
        return
    if AuditEvent.objects.filter(scope.events_q()).filter(flt.action_q()).exists():
        return
    labels = event_labels()
    known = sorted({*labels, *(code.split(".", 1)[0] + "." for code in labels)})
    others = [code for code in known if code != flt.action]  # a known type is no typo of itself
    close = difflib.get_close_matches(flt.action, others, n=1, cutoff=0.6)
    suggestion = f"; did you mean {close[0]!r}?" if close else ""
    where = "the audit log" if scope.is_everything else "the projects you audit"
    raise FilterError("action", f"no event of type {flt.action!r} in {where}{suggestion}")


def checked_filter(data: Mapping[str, Any], scope: AuditScope, report: str) -> AuditFilter:
    """The filter of `data` for `report` (the web pages, a web export, the CLI): parsed, then
    refused with FilterError if its project or event type can only match nothing."""
    flt = AuditFilter.from_mapping(data)
    check_project(flt, scope)
    check_action(flt, report, scope)
    return flt


def _json_text_contains(value: str) -> Q:
    return Q(detail_text__icontains=value)


def events_matching(flt: AuditFilter, scope: AuditScope) -> QuerySet[AuditEvent]:
    """The events the filter selects, within the reader's scope, in chain order."""
    events = AuditEvent.objects.filter(scope.events_q())
    if flt.date_from:
        events = events.filter(occurred_at__gte=flt.date_from)
    if flt.date_to:
        events = events.filter(occurred_at__lt=flt.date_to)
    if flt.project:
        events = events.filter(project=flt.project)
    if flt.through_seq is not None:
        events = events.filter(seq__lte=flt.through_seq)
    events = events.filter(flt.action_q())
    needs_text = any((flt.person, flt.role, flt.instance, flt.database, flt.column))
    if needs_text:
        events = events.annotate(detail_text=Cast("detail", TextField()))
    if flt.person:
        # The actor id is matched exactly, but through its trigram index: the redundant
        # `icontains` is what the index serves, and it keeps the planner from taking the id's
        # equality for a common value (1/distinct actors) and reading the log backwards in the
        # hope of 51 matches, which for a person found nowhere reads all of it.
        events = events.filter(
            Q(actor_id__icontains=flt.person, actor_id__iexact=flt.person)
            | Q(actor_name__icontains=flt.person)
            | _json_text_contains(f'"{flt.person}"')
        )
    if flt.role:
        # The role appears as a JSON string wherever it matches, so the indexed text test comes
        # first and the precise one only rechecks the events it finds.
        events = events.filter(_json_text_contains(f'"{flt.role}"')).filter(_role_q(flt.role))
    for value in (flt.instance, flt.database):
        if value:
            events = events.filter(Q(target_id__icontains=value) | _json_text_contains(value))
    if flt.column:
        events = events.filter(_column_q(flt.column))
    return events.order_by("seq")


def _role_q(role: str) -> Q:
    """Events that name `role`: an exemption's members, an approval policy's approvers (as created,
    or before or after a change), a role's own events, and details that carry `roles` or `role`."""
    quoted = f'"{role}"'
    q = Q(detail__roles__icontains=quoted) | Q(detail__role__iexact=role)
    q |= Q(target_type="role", target_id__iexact=role)
    for state in ("", "before__", "after__"):
        q |= Q(**{f"detail__{state}members__roles__icontains": quoted})
        q |= Q(**{f"detail__{state}approver_roles__icontains": quoted})
    return q


def _column_q(value: str) -> Q:
    """The value anywhere in a target or detail; for a label or `table.column`, also an event whose
    detail names every part (each part is a trigram-indexed test like the whole value)."""
    q = Q(target_id__icontains=value) | _json_text_contains(value)
    parts = [part for part in _LABEL_SEPARATORS.split(value) if part]
    if len(parts) > 1:
        every_part = Q()
        for part in parts:
            every_part &= _json_text_contains(part)
        q |= every_part
    return q


def describe(flt: AuditFilter) -> str:
    parts = [f"{k}={v}" for k, v in flt.as_dict().items()]
    return ", ".join(parts) if parts else "no filter"
