"""Forms of the JIT web pages. They validate what a person typed; the services decide the rest.

A `RequestError` from a service names an input (`duration`, `columns`, ...): `add_service_error`
puts its message next to the matching field, or at the top of the form when no field matches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from django import forms

from jitaccess.errors import RequestError
from jitaccess.formatting import duration_label
from jitaccess.models import ProjectAccessSettings
from jitaccess.selectors.column_access import ColumnAccess
from jitaccess.selectors.scopes import DurationLimit, Scope, access_settings
from jitaccess.selectors.tickets import ticket_field_help, ticket_hint
from jitaccess.services.grants import END_REASON_LIMIT
from jitaccess.tickets import HINT_MAX_CHARS, PATTERN_MAX_CHARS, TICKET_MAX_CHARS, pattern_problem
from masking.models import Column, Database, Table

WHOLE_DATABASE = "database"
ALL_TABLES = "all"  # the table list's entry for the whole database (`?table=all`)
TABLES_LISTED = 200  # tables listed at once; the filter narrows bigger databases
DURATION_PRESETS = [("1", "1 hour"), ("4", "4 hours"), ("24", "1 day"), ("168", "7 days")]
CUSTOM = "custom"
ABSURD_HOURS = 24 * 366 * 100  # beyond this a duration is not worth repeating back (nor a timedelta)


@dataclass(frozen=True)
class PickerColumn:
    value: str
    column: Column
    checked: bool
    visible: bool = False  # the person already sees it in clear: nothing to ask for
    why: str = ""  # why it is masked, or in clear, for the person


@dataclass(frozen=True)
class PickerTable:
    """A table of the list, with its columns as the person sees them."""

    pk: int
    value: str
    label: str
    checked: bool  # ticked whole
    columns: list[PickerColumn]

    @property
    def masked(self) -> int:
        return sum(not c.visible for c in self.columns)

    @property
    def filter_text(self) -> str:
        """What the list's filter matches: the table's name and its columns' (lower case)."""
        return " ".join([self.label, *(c.column.name for c in self.columns)]).lower()


@dataclass(frozen=True)
class Picker:
    """The scope picker, table first: `tables` lists those matching the filter (`matched` in all,
    at most TABLES_LISTED), each with how much of it is masked for the person; `chosen` is the
    table whose columns are shown to tick, None until one is chosen or when the whole database is."""

    whole_database: bool
    tables: list[PickerTable]
    matched: int
    chosen: PickerTable | None
    column_count: int  # in the whole database
    masked_count: int  # of those, masked for the person


class PlainForm(forms.Form):
    """Labels without Django's trailing colon, like the rest of Veil's pages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class ScopeForm(PlainForm):
    """What to unmask in one database: the whole database, one table, or columns of one table.

    Choices are catalog ids (`table:<id>`, `column:<id>`) of the given database only, so a forged
    id from elsewhere is an invalid choice. `cleaned_data["scope"]` is a `Scope`. With
    `fixed_scope` (an extension of a grant) there is nothing to pick.
    """

    # The picker's messages for the services' names of its inputs.
    service_fields = {"scope": "scope", "table": "scope", "columns": "scope"}

    scope = forms.MultipleChoiceField(
        label="What to unmask",
        error_messages={
            "required": "Choose columns, a whole table or the whole database.",
            "invalid_choice": "%(value)s is not a table or column of this database: tick one from the list.",
        },
    )

    def __init__(self, *args: Any, database: Database, fixed_scope: Scope | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.database = database
        self.fixed_scope = fixed_scope
        self.columns: list[Column] = []
        if fixed_scope is not None:
            del self.fields["scope"]
            return
        self.columns = list(
            Column.objects.filter(table__schema__database=database, discovered_by_decision=False)
            .select_related("table__schema")
            .order_by("table__schema__name", "table__name", "position", "name")
        )
        tables = {column.table_id: column.table for column in self.columns}
        cast(forms.ChoiceField, self.fields["scope"]).choices = (
            [(WHOLE_DATABASE, f"Whole database {database}")]
            + [(f"table:{pk}", f"Whole table {_table_label(t)}") for pk, t in tables.items()]
            + [(f"column:{c.pk}", f"{_table_label(c.table)}.{c.name}") for c in self.columns]
        )

    def clean_scope(self) -> Scope:
        picked: list[str] = self.cleaned_data["scope"]
        if WHOLE_DATABASE in picked:
            if len(picked) > 1:
                raise forms.ValidationError(
                    "The whole database already covers every table: untick the tables and columns, "
                    "or the whole database."
                )
            return Scope(self.database)
        by_value = {f"column:{c.pk}": c for c in self.columns}
        tables: dict[int, Table] = {}
        for value in picked:
            table = by_value[value].table if value in by_value else self._table(value)
            tables[table.pk] = table
        if len(tables) > 1:
            names = ", ".join(sorted(_table_label(t) for t in tables.values()))
            raise forms.ValidationError(
                f"One table per request: you chose {names}. Ask for each table separately, "
                "or for the whole database."
            )
        (table,) = tables.values()
        if f"table:{table.pk}" in picked:
            return Scope(self.database, table.schema.name, table.name)
        names_in_order = tuple(c.name for c in self.columns if f"column:{c.pk}" in picked)
        return Scope(self.database, table.schema.name, table.name, names_in_order)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.fixed_scope is not None:
            cleaned["scope"] = self.fixed_scope
        return cleaned

    def chosen_scope(self) -> Scope | None:
        """The scope picked, once validated (None before, or when the pick was refused)."""
        scope = getattr(self, "cleaned_data", {}).get("scope")
        return scope if isinstance(scope, Scope) else None

    def add_service_error(self, error: RequestError) -> None:
        field = self.service_fields.get(error.field, error.field)
        if field in self.fields:
            self.add_error(field, _sentence(error.message))
        else:
            self.add_error(None, _sentence(f"{error.field} {error.message}"))

    def picker(
        self, query: str = "", access: Mapping[int, ColumnAccess] | None = None, table: str = ""
    ) -> Picker:
        """The tables to list (their name or a column's matching `query`), each column marked
        with `access`, by column id (`selectors.column_access`: in clear or masked for the person,
        and why). The chosen table is the one ticked, else `table` (an id from the list, or
        ALL_TABLES for the whole database), else the only table there is."""
        query = query.strip().lower()
        picked = set(self["scope"].value() or ())
        access = access or {}
        tables: dict[int, PickerTable] = {}
        for column in self.columns:
            value, table_value = f"column:{column.pk}", f"table:{column.table_id}"
            if column.table_id not in tables:
                label = _table_label(column.table)
                tables[column.table_id] = PickerTable(
                    column.table_id, table_value, label, table_value in picked, []
                )
            seen = access.get(column.pk)
            tables[column.table_id].columns.append(
                PickerColumn(
                    value, column, value in picked, bool(seen and seen.visible), seen.why if seen else ""
                )
            )
        whole = WHOLE_DATABASE in picked or (table == ALL_TABLES and not picked)
        ticked = [t for t in tables.values() if t.checked or any(c.checked for c in t.columns)]
        chosen = None
        if whole:
            pass
        elif ticked:
            chosen = ticked[0]
        elif table.isdigit():
            chosen = tables.get(int(table))
        elif len(tables) == 1:
            chosen = next(iter(tables.values()))
        matching = [t for t in tables.values() if query in t.filter_text or t is chosen]
        every_column = [c for t in tables.values() for c in t.columns]
        return Picker(
            whole_database=whole,
            tables=matching[:TABLES_LISTED],
            matched=len(matching),
            chosen=chosen,
            column_count=len(every_column),
            masked_count=sum(not c.visible for c in every_column),
        )

    def _table(self, value: str) -> Table:
        pk = int(value.removeprefix("table:"))
        return next(c.table for c in self.columns if c.table_id == pk)


class UnmaskRequestForm(ScopeForm):
    """`limit` (from `services.duration_limit`) decides which durations are offered and how many
    custom hours are accepted; `show_limit` narrows the offer once the scope is known."""

    duration = forms.ChoiceField(
        choices=[*DURATION_PRESETS, (CUSTOM, "Custom")],
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose how long you need access.",
            "invalid_choice": "Choose one of the durations offered.",
        },
    )
    custom_hours = forms.IntegerField(
        label="Custom duration in hours",
        required=False,
        min_value=1,
        error_messages={
            "min_value": "Ask for at least 1 hour.",
            "invalid": "Enter a whole number of hours, such as 2 or 36.",
        },
    )
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Say why you need to see these values; approvers and auditors read this.",
        error_messages={"required": "Say why you need to see these values."},
    )
    ticket = forms.CharField(label="Ticket", required=False, max_length=TICKET_MAX_CHARS)

    def __init__(self, *args: Any, limit: DurationLimit, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.limit = limit
        self.show_limit(limit)
        self.show_ticket_rules(access_settings(self.database.project))

    def show_ticket_rules(self, rules: ProjectAccessSettings) -> None:
        """Ask for the ticket as the project wants it (the service checks it again, and Jira)."""
        field = self.fields["ticket"]
        field.required = rules.ticket_required
        field.error_messages["required"] = f"Name the ticket this request is for ({ticket_hint(rules)})."
        field.help_text = ticket_field_help(rules)

    def show_limit(self, limit: DurationLimit) -> None:
        """Offer only the presets within `limit` (the custom field stays for anything else)."""
        self.limit = limit
        offered = [(v, label) for v, label in DURATION_PRESETS if timedelta(hours=int(v)) <= limit.duration]
        cast(forms.ChoiceField, self.fields["duration"]).choices = [*offered, (CUSTOM, "Custom")]

    def clean_custom_hours(self) -> int | None:
        hours: int | None = self.cleaned_data.get("custom_hours")
        if hours is None or timedelta(hours=min(hours, ABSURD_HOURS)) <= self.limit.duration:
            return hours
        if hours > ABSURD_HOURS:
            raise forms.ValidationError(_sentence(self.limit.describe()))
        raise forms.ValidationError(_sentence(self.limit.refusal(timedelta(hours=hours))))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        preset = cleaned.get("duration")
        if preset == CUSTOM:
            hours = cleaned.get("custom_hours")
            if hours is not None:
                cleaned["duration"] = timedelta(hours=hours)
            elif "custom_hours" not in self.errors:
                self.add_error("custom_hours", "Enter the number of hours.")
        elif preset:
            cleaned["duration"] = timedelta(hours=int(preset))
        return cleaned


class BreakGlassForm(ScopeForm):
    """`cap` is the project's `breakglass_max_duration`: the durations offered are 15, 30 and 60
    minutes below it, and the cap itself; any other value is refused naming those offered."""

    duration = forms.TypedChoiceField(
        label="Duration",
        coerce=int,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose how long you need access."},
    )
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Name the incident and what you need to see. Security reads this now.",
        error_messages={"required": "Name the incident: break-glass needs a reason."},
    )

    def __init__(self, *args: Any, cap: timedelta, **kwargs: Any):
        super().__init__(*args, **kwargs)
        cap_minutes = int(cap.total_seconds() // 60)
        minutes = sorted({m for m in (15, 30, 60) if m <= cap_minutes} | {cap_minutes})
        labels = [duration_label(timedelta(minutes=m)) for m in minutes]
        field = cast(forms.ChoiceField, self.fields["duration"])
        field.choices = list(zip(minutes, labels, strict=True))
        field.initial = minutes[-1]
        offered = labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} or {labels[-1]}"
        field.error_messages["invalid_choice"] = (
            f"Choose one of the durations offered: {offered} "
            f"(break-glass lasts at most {labels[-1]} in {self.database.project})."
        )

    def clean_duration(self) -> timedelta:
        return timedelta(minutes=self.cleaned_data["duration"])


class TicketRulesForm(PlainForm):
    """What a project's requests must name as their ticket (`services.access_settings.ticket_rules_save`
    checks it again and names the field at fault)."""

    required = forms.BooleanField(required=False, label="Every request names a ticket")
    pattern = forms.CharField(
        required=False,
        max_length=PATTERN_MAX_CHARS,
        label="Pattern",
        help_text="A regular expression the whole ticket must match, such as OPS-[0-9]+ (RE2 syntax: no "
        "look-around or back-references). Empty: a link or an issue key.",
    )
    hint = forms.CharField(
        required=False,
        max_length=HINT_MAX_CHARS,
        label="Hint",
        help_text="What a ticket looks like, in words, such as “an OPS issue key, e.g. OPS-123”: shown "
        "with the ticket field and when a ticket is refused.",
    )
    in_jira = forms.BooleanField(
        required=False,
        label="The ticket must be an open Jira issue",
        help_text="Veil reads the issue in Jira when the request is made, refuses one that does not exist, "
        "is done, or cannot be read, and shows approvers its title next to the reason.",
    )

    def clean_pattern(self) -> str:
        pattern: str = self.cleaned_data["pattern"].strip()
        if pattern and (problem := pattern_problem(pattern)):
            raise forms.ValidationError(_sentence(f"the pattern {problem}"))
        return pattern

    @classmethod
    def for_rules(cls, rules: ProjectAccessSettings) -> TicketRulesForm:
        return cls(
            initial={
                "required": rules.ticket_required,
                "pattern": rules.ticket_pattern,
                "hint": rules.ticket_hint,
                "in_jira": rules.ticket_in_jira,
            }
        )


class DenyForm(PlainForm):
    reason = forms.CharField(
        label="Reason for denying",
        max_length=2000,
        error_messages={"required": "Say why the request is denied; the requester reads it."},
    )


class EndGrantForm(PlainForm):
    """The confirmation page's form for revoking or giving up a grant. `confirm` is only ever sent
    by that page, so a bare POST (an old page, a script) is shown the page instead of acting."""

    confirm = forms.BooleanField(widget=forms.HiddenInput, initial=True)
    reason = forms.CharField(
        label="Reason (optional)",
        required=False,
        max_length=END_REASON_LIMIT,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The requester reads this with the notice that the grant was revoked.",
    )


class ReviewForm(PlainForm):
    notes = forms.CharField(
        label="Review notes",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": "Say what the review found."},
    )


class ApprovalPreviewForm(ScopeForm):
    """What the request form's approval preview reads: the scope and the duration as the form has
    them so far, both optional (the preview says what is missing), not the reason or the ticket,
    which no policy reads. Every preset is accepted: a duration over the limit is the preview's to
    point out. `cleaned_data["scope"]` is a `Scope` or None, `["duration"]` a timedelta or None."""

    duration = forms.ChoiceField(
        required=False,
        choices=[*DURATION_PRESETS, (CUSTOM, "Custom")],
        error_messages={"invalid_choice": "Choose one of the durations offered."},
    )
    custom_hours = forms.IntegerField(
        label="Custom duration in hours",
        required=False,
        min_value=1,
        max_value=ABSURD_HOURS,
        error_messages={
            "min_value": "Ask for at least 1 hour.",
            "max_value": "Ask for a duration a request can last, in hours.",
            "invalid": "Enter a whole number of hours, such as 2 or 36.",
        },
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if "scope" in self.fields and not self["scope"].value():
            del self.fields["scope"]  # nothing ticked yet: no scope to judge

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        cleaned.setdefault("scope", None)
        preset, hours = cleaned.get("duration"), cleaned.get("custom_hours")
        if preset == CUSTOM:
            cleaned["duration"] = timedelta(hours=hours) if hours else None
        else:
            cleaned["duration"] = timedelta(hours=int(preset)) if preset else None
        return cleaned


def _table_label(table: Table) -> str:
    return f"{table.schema.name}.{table.name}" if table.schema.name else table.name


def _sentence(text: str) -> str:
    """A service's message as a sentence on the page: capitalised, with its full stop."""
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."
