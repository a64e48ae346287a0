"""`manage.py catalog sync --dsn postgresql://...`: read a PostgreSQL database's schema into the catalog.

Reads information_schema (names and types only, never a row of data), upserts it through the same
service as the bulk API, and prints the classifications it suggests from column names and types.
"""

from __future__ import annotations

import getpass
from collections import defaultdict
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.models import ActorType, Channel
from audit.services import Actor
from masking.models import Column
from masking.services.catalog import CatalogError, catalog_upsert

_COLUMNS_SQL = """
SELECT table_schema, table_name, column_name,
       CASE WHEN data_type = 'USER-DEFINED' THEN udt_name
            WHEN data_type = 'ARRAY' THEN udt_name
            ELSE data_type END
FROM information_schema.columns
WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_schema NOT LIKE 'pg_toast%%'
  AND (%(schemas)s::text[] IS NULL OR table_schema = ANY(%(schemas)s::text[]))
ORDER BY table_schema, table_name, ordinal_position
"""


def read_postgres_schema(dsn: str, schemas: list[str] | None) -> tuple[str, list[dict[str, Any]]]:
    """Return the database name and its schemas/tables/columns as the catalog upsert expects them."""
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            database = conn.info.dbname
            rows = conn.execute(_COLUMNS_SQL, {"schemas": schemas or None}).fetchall()
    except psycopg.Error as exc:
        raise CommandError(f"cannot read the schema from --dsn: {exc}".strip()) from exc
    tree: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for schema, table, column, data_type in rows:
        tree[schema][table].append({"name": column, "data_type": data_type})
    return database, [
        {"name": schema, "tables": [{"name": t, "columns": cols} for t, cols in tables.items()]}
        for schema, tables in tree.items()
    ]


class Command(BaseCommand):
    help = "Catalog tools. `catalog sync` reads a PostgreSQL database's schema into Veil's catalog."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        sync = sub.add_parser("sync", help="Read information_schema of a PostgreSQL database and upsert it.")
        sync.add_argument("--dsn", required=True, help="postgresql://user@host:port/dbname")
        sync.add_argument("--instance", required=True, help="Veil instance id, e.g. prod-pg")
        sync.add_argument("--environment", required=True, help="Environment id, e.g. prod")
        sync.add_argument("--project", help="Project key; required the first time a database is synced")
        sync.add_argument("--title", default="", help="Instance title")
        sync.add_argument("--schema", action="append", dest="schemas", help="Only this schema (repeatable)")
        sync.add_argument(
            "--prune", action="store_true", help="Delete catalog columns the database no longer has"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["dsn"].startswith(("postgresql://", "postgres://")):
            raise CommandError("--dsn must be a postgresql:// URL")
        database, schemas = read_postgres_schema(options["dsn"], options["schemas"])
        if not schemas:
            raise CommandError(
                f"database {database!r} has no tables in the selected schemas; nothing to sync"
            )
        db_spec: dict[str, Any] = {"name": database, "schemas": schemas}
        if options["project"]:
            db_spec["project"] = options["project"]
        actor = Actor(
            type=ActorType.SYSTEM,
            id=f"cli:{getpass.getuser()}",
            name=f"catalog sync ({getpass.getuser()})",
        )
        try:
            summary = catalog_upsert(
                instance_spec={
                    "id": options["instance"],
                    "title": options["title"],
                    "engine": "postgresql",
                    "environment": options["environment"],
                },
                databases=[db_spec],
                prune=options["prune"],
                actor=actor,
                channel=Channel.CLI,
            )
        except CatalogError as exc:
            field = exc.field.replace("databases[0].project", "--project")
            raise CommandError(f"{field}: {exc.message}") from exc
        result = summary.as_dict()
        self.stdout.write(
            f"synced {options['instance']}/{database}: "
            f"{result['created']['columns']} columns created, {result['updated_columns']} updated, "
            f"{result['unchanged_columns']} unchanged, {result['deleted_columns']} deleted"
        )
        self._print_suggestions(options["instance"], database)

    def _print_suggestions(self, instance: str, database: str) -> None:
        suggested = Column.objects.filter(
            table__schema__database__instance__key=instance,
            table__schema__database__name=database,
            classification_level__isnull=True,
        ).exclude(suggested_category="")
        for column in suggested.select_related("table__schema"):
            self.stdout.write(
                f"  suggestion (not a fact, review it): {column.table.schema.name}.{column.table.name}."
                f"{column.name} looks like {column.suggested_category}, level {column.suggested_level}"
            )
