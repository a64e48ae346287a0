"""Writing a `DecisionRecord` on the decision path: one statement, committed before the answer.

Every request that unmasks waits for its record, so this write is on Veil's hot path, and it skips
the ORM: the INSERT is built once, and on PostgreSQL it runs as a prepared statement with
server-side binding on the calling thread's connection (values dumped in C, parsed and planned
once per connection: `config/settings.py` sets psycopg's `prepare_threshold`, which Django leaves
off), under Django's error wrapper. Through the ORM the write cost more CPU than
the rest of the request (docs/decisions.md). SQLite, the embedded default, takes the same
statement through Django's cursor.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg
from django.db import connection
from psycopg.types.json import Jsonb

from audit.chain import DECISION_RECORD_FIELDS
from audit.models import DecisionRecord

FIELDS = DECISION_RECORD_FIELDS[1:]  # what a record is made of, as sealed; its id comes back


def write_decision_record(values: Sequence[Any]) -> int:
    """Insert one DecisionRecord (values in `FIELDS` order) and return its id. The decision path
    runs in autocommit, so the row is committed when this returns."""
    sql, fields = _statement()
    if connection.vendor != "postgresql":
        params = [f.get_db_prep_save(v, connection) for f, v in zip(fields, values, strict=True)]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return int(cursor.fetchone()[0])
    *scalars, asserted_groups, unmasked = values
    params = [*scalars, Jsonb(asserted_groups, dumps=orjson.dumps), Jsonb(unmasked, dumps=orjson.dumps)]
    with connection.wrap_database_errors:
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params, prepare=True)
            row = cursor.fetchone()
    assert row is not None
    return int(row[0])


@functools.cache
def _statement() -> tuple[str, tuple[Any, ...]]:
    """`INSERT ... VALUES (...) RETURNING id` for a DecisionRecord, and its fields in order."""
    meta = DecisionRecord._meta
    columns = {f.name: f.column for f in meta.concrete_fields if f.column is not None}
    fields = tuple(meta.get_field(name) for name in FIELDS)
    quote = connection.ops.quote_name
    names = ", ".join(quote(columns[name]) for name in FIELDS)
    values = f"({', '.join(['%s'] * len(fields))})"
    pk = quote(columns["id"])
    return f"INSERT INTO {quote(meta.db_table)} ({names}) VALUES {values} RETURNING {pk}", fields  # noqa: S608 (names from the model)
