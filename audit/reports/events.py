"""The event log report, and its COPY statement for large exports on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.db import connection

from audit.chain import EVENT_FIELDS
from audit.filters import AuditFilter, AuditScope, events_matching
from audit.reports.common import CHUNK, Row

# The export leads with what happened, then the rest of the event's fields (`audit.chain`).
_LEADING = ("seq", "occurred_at", "action")
EVENT_COLUMNS = (*_LEADING, *(f for f in EVENT_FIELDS if f not in _LEADING))


def event_rows(flt: AuditFilter, scope: AuditScope) -> Iterator[Row]:
    return events_matching(flt, scope).values_list(*EVENT_COLUMNS).iterator(chunk_size=CHUNK)


# On PostgreSQL the events export, the one that reaches millions of rows, is a COPY of a query the
# database formats itself: the same CSV text `audit.exports.csv_line` writes (neutralised cells,
# QUOTE_MINIMAL, LF; empty text as NULL so it is not quoted), or JSON Lines built with to_json. It
# runs close to a plain COPY of the table (docs/performance-audit.md). Other reports, and SQLite,
# are encoded in Python from `rows`.
_ISO_UTC = "to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
_FORMULA_CODES = "(61, 43, 45, 64, 9, 13)"  # = + - @ tab CR, as audit.exports.FORMULA_PREFIXES
_TEXT_COLUMNS = (
    "action",
    "actor_type",
    "actor_id",
    "actor_name",
    "target_type",
    "target_id",
    "target_repr",
    "project",
    "channel",
)


def _csv_text_sql(expr: str) -> str:
    return f"NULLIF(CASE WHEN ascii({expr}) IN {_FORMULA_CODES} THEN '''' || {expr} ELSE {expr} END, '')"


def _csv_select() -> str:
    columns = {c: _csv_text_sql(f"e.{c}") for c in _TEXT_COLUMNS}
    columns |= {"seq": "e.seq", "occurred_at": _ISO_UTC, "detail": _csv_text_sql("e.detail::text")}
    columns |= {"prev_hash": "e.prev_hash", "hash": "e.hash"}
    return ", ".join(f"{columns[c]} AS {c}" for c in EVENT_COLUMNS)


def _jsonl_select() -> str:
    parts = {c: f"to_json(e.{c})::text" for c in _TEXT_COLUMNS}
    parts |= {"seq": "e.seq::text", "occurred_at": f"'\"' || {_ISO_UTC} || '\"'", "detail": "e.detail::text"}
    parts |= {"prev_hash": "'\"' || e.prev_hash || '\"'", "hash": "'\"' || e.hash || '\"'"}
    pieces = " || ',' || ".join(f"'\"{c}\":' || {parts[c]}" for c in EVENT_COLUMNS)
    return f"'{{' || {pieces} || '}}'"


# JSON text never holds a raw control character, so CSV mode with control characters as quote and
# delimiter writes each line exactly as built (text mode would escape its backslashes).
_COPY_OPTIONS = {"csv": "FORMAT csv, HEADER", "jsonl": "FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02'"}


def event_copy_sql(fmt: str, flt: AuditFilter, scope: AuditScope) -> tuple[str, Sequence[Any]] | None:
    """The events report as one `COPY ... TO STDOUT` statement and its parameters (PostgreSQL only;
    None elsewhere, or for a PDF)."""
    if connection.vendor != "postgresql" or fmt not in _COPY_OPTIONS:
        return None
    inner, params = events_matching(flt, scope).order_by().values_list(*EVENT_COLUMNS).query.sql_with_params()
    select = _csv_select() if fmt == "csv" else _jsonl_select()
    # Built from our own column names; the filter's values travel as parameters.
    statement = f"COPY (SELECT {select} FROM ({inner}) AS e ORDER BY e.seq) TO STDOUT ({_COPY_OPTIONS[fmt]})"  # noqa: S608
    return statement, params
