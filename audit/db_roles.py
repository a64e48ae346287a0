"""The PostgreSQL privileges of Veil's runtime role: what `manage.py audit db-roles` prints or applies.

Triggers refuse UPDATE, DELETE and TRUNCATE on the append-only tables, but a trigger is no
boundary for the role that owns the table: it can `SET pgtrigger.ignore`, `ALTER TABLE ... DISABLE
TRIGGER` or drop it. So Veil runs as two roles. The owner role runs migrations and owns every
table; the runtime role (web, workers, beat) owns nothing and is granted exactly what it needs:
SELECT and INSERT on the append-only tables (every model with a `pgtrigger.Protect` trigger, the
audit log's among them), SELECT, INSERT and UPDATE on the chain head, and SELECT, INSERT, UPDATE
and DELETE on the other tables. It gets no TRUNCATE, REFERENCES or TRIGGER anywhere, and no CREATE
in the schema. New tables get nothing until the grants are applied again: run it after every migrate.
"""

from __future__ import annotations

import re

import pgtrigger
from django.apps import apps
from django.db import connection, models

from audit.models import ChainHead

ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SEALING_FUNCTION = "audit_committed_watermark(text)"
FULL = ("SELECT", "INSERT", "UPDATE", "DELETE")


class RoleError(ValueError):
    """A role name that is not a plain PostgreSQL identifier, or a runtime role that could do more
    than it is granted (superuser, owner of something, member of an owner)."""


def _checked(name: str) -> str:
    if not ROLE_NAME.fullmatch(name):
        raise RoleError(f"{name!r} is not a plain role name (lower-case letters, digits, _)")
    return connection.ops.quote_name(name)


def _append_only(model: type[models.Model]) -> bool:
    """True if a pgtrigger.Protect trigger refuses UPDATE or DELETE on the model's table."""
    for trigger in getattr(model._meta, "triggers", []):
        if isinstance(trigger, pgtrigger.Protect) and any(
            op in str(trigger.operation) for op in ("UPDATE", "DELETE")
        ):
            return True
    return False


def table_privileges() -> dict[str, tuple[str, ...]]:
    """Every table of the current schema and what the runtime role may do to it. A table no model
    knows (django_migrations, or one a later migration will explain) is only read."""
    by_table = {m._meta.db_table: m for m in apps.get_models(include_auto_created=True)}
    with connection.cursor() as cursor:
        tables = [t.name for t in connection.introspection.get_table_list(cursor) if t.type == "t"]
    privileges: dict[str, tuple[str, ...]] = {}
    for table in sorted(tables):
        model = by_table.get(table)
        if model is None:
            privileges[table] = ("SELECT",)
        elif model is ChainHead:
            privileges[table] = ("SELECT", "INSERT", "UPDATE")
        elif _append_only(model):
            privileges[table] = ("SELECT", "INSERT")
        else:
            privileges[table] = FULL
    return privileges


def runtime_grants_sql(*, runtime: str) -> list[str]:
    """The statements that give `runtime` its privileges (and take away any others) in the current
    schema. Idempotent; run them as the owner role or a superuser."""
    role = _checked(runtime)
    with connection.cursor() as cursor:
        cursor.execute("SELECT quote_ident(current_schema())")
        schema = cursor.fetchone()[0]
    statements = [
        f"REVOKE ALL ON SCHEMA {schema} FROM {role}",
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}",
    ]
    for table, privileges in table_privileges().items():
        statements.append(f"GRANT {', '.join(privileges)} ON TABLE {schema}.{_checked(table)} TO {role}")
    statements += [
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        f"GRANT EXECUTE ON FUNCTION {schema}.{SEALING_FUNCTION} TO {role}",
    ]
    return statements


def runtime_role_problems(*, runtime: str, owner: str) -> list[str]:
    """What would let `runtime` get past its grants: attributes, owning anything in this database,
    or acting as a role that owns something (membership). Empty when it is a plain runtime role."""
    for name in (runtime, owner):
        _checked(name)
    problems = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication"
            " FROM pg_roles WHERE rolname = %s",
            [runtime],
        )
        row = cursor.fetchone()
        if row is None:
            return [f"role {runtime} does not exist"]
        for flag, name in zip(
            row, ("SUPERUSER", "CREATEROLE", "CREATEDB", "BYPASSRLS", "REPLICATION"), strict=True
        ):
            if flag:
                problems.append(f"{runtime} has {name}")
        cursor.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND pg_has_role(%s, c.relowner, 'USAGE')",
            [runtime],
        )
        if owned := cursor.fetchone()[0]:
            problems.append(f"{runtime} owns (or is a member of a role owning) {owned} relations")
        cursor.execute(
            "SELECT pg_has_role(%s, nspowner, 'USAGE') FROM pg_namespace WHERE nspname = current_schema()",
            [runtime],
        )
        if cursor.fetchone()[0]:
            problems.append(f"{runtime} owns the schema")
        cursor.execute(
            "SELECT pg_has_role(%s, datdba, 'USAGE') FROM pg_database WHERE datname = current_database()",
            [runtime],
        )
        if cursor.fetchone()[0]:
            problems.append(f"{runtime} owns the database")
        cursor.execute("SELECT pg_has_role(%s, %s, 'USAGE')", [runtime, owner])
        if cursor.fetchone()[0]:
            problems.append(f"{runtime} is a member of {owner}")
    return problems
