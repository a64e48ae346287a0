"""Catalog writes: upsert a whole instance's schema in one transaction.

The same function serves the bulk API (a data-access layer or scanner pushes its schema) and
`manage.py catalog sync` (Veil reads information_schema itself). It is idempotent: pushing the same
catalog twice changes nothing and reports every column as unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from audit.models import ActorType, Channel
from audit.services import Actor, Target, record_event
from masking.catalog.classification import suggest_classification
from masking.decisions.engine import ColumnKey
from masking.models import (
    ClassificationLevel,
    Column,
    Database,
    Instance,
    Project,
    Schema,
    SemanticType,
    Table,
)
from masking.services.policy import bump_epoch

logger = logging.getLogger(__name__)


class CatalogError(ValueError):
    """A catalog push that cannot be applied; `field` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class UpsertSummary:
    instance: str
    created: dict[str, int] = field(default_factory=lambda: {"databases": 0, "tables": 0, "columns": 0})
    updated_columns: int = 0
    unchanged_columns: int = 0
    deleted_columns: int = 0
    classification_changes: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "created": self.created,
            "updated_columns": self.updated_columns,
            "unchanged_columns": self.unchanged_columns,
            "deleted_columns": self.deleted_columns,
            "classification_changes": len(self.classification_changes),
        }


_COLUMN_FIELDS = ("data_type", "position", "classification_level", "tags", "semantic_type_id")
_SUGGESTION_FIELDS = ("suggested_category", "suggested_level")


def _upsert_instance(spec: dict[str, Any]) -> Instance:
    instance, created = Instance.objects.get_or_create(
        key=spec["id"],
        defaults={
            "title": spec.get("title", ""),
            "engine": spec["engine"],
            "environment": spec["environment"],
        },
    )
    if not created:
        changed = instance_changes(instance, spec)
        for attr in changed:
            setattr(instance, attr, spec[attr])
        if changed:
            instance.save()
    return instance


def instance_changes(instance: Instance, spec: dict[str, Any]) -> list[str]:
    """The fields of `instance` (title, engine, environment) a push's instance spec changes."""
    return [f for f in ("title", "engine", "environment") if f in spec and getattr(instance, f) != spec[f]]


def _resolve_projects(databases: list[dict[str, Any]], instance: Instance) -> dict[str, Project]:
    """Map each pushed database to its project; a new database must name an existing project."""
    keys = {db["project"] for db in databases if db.get("project")}
    projects = {p.key: p for p in Project.objects.filter(key__in=keys)}
    existing = {
        d.name: d.project for d in Database.objects.filter(instance=instance).select_related("project")
    }
    resolved: dict[str, Project] = {}
    for index, db in enumerate(databases):
        key = db.get("project")
        if key:
            if key not in projects:
                raise CatalogError(f"databases[{index}].project", f"unknown project {key!r}")
            resolved[db["name"]] = projects[key]
        elif db["name"] in existing:
            resolved[db["name"]] = existing[db["name"]]
        else:
            raise CatalogError(
                f"databases[{index}].project", "required for a database Veil does not know yet"
            )
    return resolved


def _resolve_semantic_types(databases: list[dict[str, Any]]) -> dict[str, int]:
    wanted = {
        col["semantic_type"]
        for db in databases
        for schema in db["schemas"]
        for table in schema["tables"]
        for col in table["columns"]
        if col.get("semantic_type")
    }
    found = dict(SemanticType.objects.filter(key__in=wanted).values_list("key", "id"))
    missing = sorted(wanted - set(found))
    if missing:
        raise CatalogError("semantic_type", f"unknown semantic type(s): {', '.join(missing)}")
    return found


@transaction.atomic
def catalog_upsert(
    *,
    instance_spec: dict[str, Any],
    databases: list[dict[str, Any]],
    prune: bool,
    actor: Actor,
    channel: str,
) -> UpsertSummary:
    """Create or update an instance and the given databases, schemas, tables and columns.

    Fields a push leaves out (`classification_level`, `tags`, `semantic_type`) keep their current
    values, so a scanner that knows only names and types never erases an admin's classification.
    With `prune`, columns and tables of the pushed databases that the push no longer lists are deleted.
    Raises CatalogError (nothing written) when the push refers to unknown projects or semantic types.
    """
    instance = _upsert_instance(instance_spec)
    projects = _resolve_projects(databases, instance)
    semantic_types = _resolve_semantic_types(databases)
    summary = UpsertSummary(instance=instance.key)

    for db_spec in databases:
        database, created = Database.objects.get_or_create(
            instance=instance, name=db_spec["name"], defaults={"project": projects[db_spec["name"]]}
        )
        summary.created["databases"] += int(created)
        if not created and database.project_id != projects[db_spec["name"]].id:
            database.project = projects[db_spec["name"]]
            database.save(update_fields=["project"])
        _upsert_database_contents(database, db_spec["schemas"], semantic_types, prune, summary)

    if summary.created["columns"] or summary.updated_columns or summary.deleted_columns:
        bump_epoch(policy=True)
    record_event(
        action="catalog.upserted",
        actor=actor,
        channel=channel,
        target=Target("instance", instance.key, instance.key),
        detail={**summary.as_dict(), "prune": prune},
    )
    for change in summary.classification_changes:
        record_event(
            action="catalog.classification_changed",
            actor=actor,
            channel=channel,
            target=Target("column", change["column"], change["column"]),
            project=change["project"],
            detail={"before": change["before"], "after": change["after"]},
        )
    return summary


def _upsert_database_contents(
    database: Database,
    schema_specs: list[dict[str, Any]],
    semantic_types: dict[str, int],
    prune: bool,
    summary: UpsertSummary,
) -> None:
    """Upsert one database's tables and columns with a constant number of queries per schema."""
    for schema_spec in schema_specs:
        schema, _ = Schema.objects.get_or_create(database=database, name=schema_spec["name"])
        tables = {t.name: t for t in Table.objects.filter(schema=schema)}
        new_tables = [
            Table(schema=schema, name=t["name"]) for t in schema_spec["tables"] if t["name"] not in tables
        ]
        for table in Table.objects.bulk_create(new_tables):
            tables[table.name] = table
        summary.created["tables"] += len(new_tables)

        existing = {
            (c.table_id, c.name): c
            for c in Column.objects.filter(table__schema=schema).select_related("table")
        }
        to_create: list[Column] = []
        to_update: list[Column] = []
        seen: set[tuple[int, str]] = set()
        for table_spec in schema_spec["tables"]:
            table = tables[table_spec["name"]]
            for position, col_spec in enumerate(table_spec["columns"], start=1):
                key = (table.pk, col_spec["name"])
                seen.add(key)
                wanted = _column_values(col_spec, position, semantic_types)
                column = existing.get(key)
                if column is None:
                    to_create.append(Column(table=table, name=col_spec["name"], **_with_defaults(wanted)))
                    continue
                changed = [f for f, v in wanted.items() if getattr(column, f) != v]
                if "classification_level" in changed:
                    summary.classification_changes.append(
                        {
                            "column": f"{database}/{schema.name}.{table.name}.{column.name}",
                            "project": database.project.key,
                            "before": column.classification_level,
                            "after": wanted["classification_level"],
                        }
                    )
                if changed:
                    for f in changed:
                        setattr(column, f, wanted[f])
                    if column.discovered_by_decision:
                        column.discovered_by_decision = False
                        changed.append("discovered_by_decision")
                    to_update.append(column)
                    if set(changed) - set(_SUGGESTION_FIELDS):
                        summary.updated_columns += 1
                    else:
                        summary.unchanged_columns += 1
                else:
                    summary.unchanged_columns += 1
        Column.objects.bulk_create(to_create, batch_size=1000)
        if to_update:
            Column.objects.bulk_update(
                to_update,
                [*_COLUMN_FIELDS, *_SUGGESTION_FIELDS, "discovered_by_decision"],
                batch_size=1000,
            )
        summary.created["columns"] += len(to_create)
        if prune:
            stale = [c.pk for key, c in existing.items() if key not in seen]
            summary.deleted_columns += Column.objects.filter(pk__in=stale).delete()[0]
            pushed = {t["name"] for t in schema_spec["tables"]}
            Table.objects.filter(schema=schema).exclude(name__in=pushed).delete()


def _column_values(spec: dict[str, Any], position: int, semantic_types: dict[str, int]) -> dict[str, Any]:
    """The column fields a push sets; absent optional fields are left out so they are kept."""
    suggestion = suggest_classification(spec["name"], spec.get("data_type", ""))
    values: dict[str, Any] = {
        "data_type": spec.get("data_type", ""),
        "position": position,
        "suggested_category": suggestion.category if suggestion else "",
        "suggested_level": suggestion.level if suggestion else None,
    }
    if "classification_level" in spec:
        values["classification_level"] = spec["classification_level"]
    if "tags" in spec:
        values["tags"] = sorted(set(spec["tags"]))
    if "semantic_type" in spec:
        values["semantic_type_id"] = semantic_types[spec["semantic_type"]] if spec["semantic_type"] else None
    return values


def _with_defaults(values: dict[str, Any]) -> dict[str, Any]:
    return {"classification_level": None, "tags": [], "semantic_type_id": None, **values}


class DiscoveryBudget:
    """How many unknown columns one token's decision requests may still add to the catalog.

    A `decisions` token names whatever columns it likes, and each unknown one used to become a
    catalog row: one token grew the catalog by 3,000 columns in three requests. So each token may
    add at most `CATALOG_DISCOVERY_MAX` columns per `CATALOG_DISCOVERY_WINDOW_S` (the window starts
    at its first discovery). The count lives in the shared cache (Redis in production; with the
    in-process cache the bound holds per process) and is reserved with one atomic INCR before any
    row is written, so concurrent requests cannot overshoot it. If the cache cannot answer, nothing
    is recorded: the answers are masks either way. Refused columns are still answered
    `unknown_column`; they are only left out of the catalog, and the first refusal per project and
    window is logged and audited (`catalog.discoveries_throttled`) for the policy checks page.
    """

    def __init__(self, *, token_prefix: str, service_account: str) -> None:
        self.token_prefix = token_prefix
        self.service_account = service_account
        self._key = f"veil:catalog-discoveries:{token_prefix}"
        self.shortfall = False  # some column was left out: name it again in a later request

    def take(self, wanted: int) -> int:
        """Reserve up to `wanted` discoveries; returns how many may be written."""
        limit = settings.CATALOG_DISCOVERY_MAX
        try:
            cache.add(self._key, 0, timeout=settings.CATALOG_DISCOVERY_WINDOW_S)
            used = cache.incr(self._key, wanted)
        except Exception:
            logger.warning("cache unavailable: unknown columns are not recorded", exc_info=True)
            self.shortfall = True
            return 0
        allowed = max(0, min(wanted, limit - (used - wanted)))
        self.shortfall = self.shortfall or allowed < wanted
        return allowed

    def refused(self, counts: dict[str, int]) -> None:
        """Note columns left out, per project: logged and audited once per project and window."""
        window = settings.CATALOG_DISCOVERY_WINDOW_S
        for project, count in sorted(counts.items()):
            try:
                first = cache.add(f"{self._key}:refused:{project}", 1, timeout=window)
            except Exception:
                first = False
            if not first:
                continue
            logger.warning(
                "catalog discovery throttled: token %s of %s reached %d new columns in %d s; "
                "%d unknown column(s) of project %s not recorded (still masked)",
                self.token_prefix,
                self.service_account,
                settings.CATALOG_DISCOVERY_MAX,
                window,
                count,
                project,
            )
            record_event(
                action="catalog.discoveries_throttled",
                actor=Actor(
                    type=ActorType.SERVICE_ACCOUNT, id=f"sa:{self.service_account}", name=self.service_account
                ),
                channel=Channel.API,
                target=Target("api_token", self.token_prefix, f"{self.service_account} {self.token_prefix}"),
                project=project,
                detail={"limit": settings.CATALOG_DISCOVERY_MAX, "window_s": window, "not_recorded": count},
            )


def catalog_record_discovered(keys: list[ColumnKey], *, budget: DiscoveryBudget | None = None) -> int:
    """Add columns a decision request named but the catalog lacks, as unclassified discoveries.

    They stay `discovered_by_decision` (and keep being decided as unknown columns, masked by
    default) until a catalog push or sync confirms them. Columns of instances or databases Veil
    does not know are skipped: a database needs a project, which only a person can choose. With a
    `budget` (a decision request's token), at most what it allows is written, schemas and tables
    included; without one (tests, tools run by an operator) every new column is.

    The decision request waits for this (once per column and process), so it is a fixed handful of
    bulk statements whatever the number of columns, not a few per column; rows another process
    adds meanwhile are left as they are (`ignore_conflicts`). Returns how many columns it inserted.
    """
    databases = {
        (d.instance.key, d.name): (d.pk, d.project.key)
        for d in Database.objects.select_related("instance", "project").filter(
            instance__key__in={k.instance for k in keys}, name__in={k.database for k in keys}
        )
    }
    named = {
        (databases[(k.instance, k.database)][0], k.schema, k.table, k.column)
        for k in keys
        if (k.instance, k.database) in databases
    }
    if not named:
        return 0
    existing = set(
        Column.objects.filter(
            table__schema__database_id__in={d for d, _, _, _ in named},
            table__schema__name__in={s for _, s, _, _ in named},
            table__name__in={t for _, _, t, _ in named},
            name__in={c for _, _, _, c in named},
        ).values_list("table__schema__database_id", "table__schema__name", "table__name", "name")
    )
    candidates = sorted(named - existing)
    allowed = budget.take(len(candidates)) if budget is not None and candidates else len(candidates)
    wanted, left_out = candidates[:allowed], candidates[allowed:]
    if wanted:
        with transaction.atomic():
            schema_keys = {(database, schema) for database, schema, _, _ in wanted}
            Schema.objects.bulk_create(
                [Schema(database_id=database, name=name) for database, name in schema_keys],
                ignore_conflicts=True,
            )
            schemas = _ids(Schema.objects, "database_id", schema_keys)
            table_keys = {(schemas[(database, schema)], table) for database, schema, table, _ in wanted}
            Table.objects.bulk_create(
                [Table(schema_id=schema, name=name) for schema, name in table_keys], ignore_conflicts=True
            )
            tables = _ids(Table.objects, "schema_id", table_keys)
            new = [
                _discovered(tables[(schemas[(database, schema)], table)], column)
                for database, schema, table, column in wanted
            ]
            Column.objects.bulk_create(new, ignore_conflicts=True)
    if left_out and budget is not None:
        project_of = dict(databases.values())
        counts: dict[str, int] = {}
        for database, _, _, _ in left_out:
            counts[project_of[database]] = counts.get(project_of[database], 0) + 1
        budget.refused(counts)
    return len(wanted)


def _ids(manager: Any, parent: str, wanted: set[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """`{(parent id, name): id}` of the schemas or tables `wanted` names (and a few more at most)."""
    rows = manager.filter(
        **{f"{parent}__in": {p for p, _ in wanted}, "name__in": {n for _, n in wanted}}
    ).values_list("pk", parent, "name")
    return {(parent_id, name): pk for pk, parent_id, name in rows}


def _discovered(table_id: int, name: str) -> Column:
    suggestion = suggest_classification(name)
    return Column(
        table_id=table_id,
        name=name,
        discovered_by_decision=True,
        suggested_category=suggestion.category if suggestion else "",
        suggested_level=suggestion.level if suggestion else None,
    )


@transaction.atomic
def column_classify(
    *, column: Column, level: int, actor: Actor, channel: str, detail: dict[str, Any] | None = None
) -> bool:
    """State a column's classification level, as an administrator does from the catalog page.

    Recorded like a catalog push's change (`catalog.classification_changed`, with before and after,
    plus `detail`), and the decision epoch moves: the level decides masking by classification.
    Returns False, recording nothing, when the column already has that level. Raises CatalogError
    for a level that is not one of `ClassificationLevel`.
    """
    if level not in ClassificationLevel.values:
        raise CatalogError(
            "classification_level", f"must be one of {', '.join(map(str, ClassificationLevel.values))}"
        )
    locked = (
        Column.objects.select_for_update()
        .select_related("table__schema__database__instance", "table__schema__database__project")
        .get(pk=column.pk)
    )
    before = locked.classification_level
    if before == level:
        return False
    locked.classification_level = level
    locked.save(update_fields=["classification_level"])
    column.classification_level = level
    bump_epoch(policy=True)
    label = str(locked)  # instance/database/schema.table.column, as a catalog push records it
    record_event(
        action="catalog.classification_changed",
        actor=actor,
        channel=channel,
        target=Target("column", label, label),
        project=locked.table.schema.database.project.key,
        detail={**(detail or {}), "before": before, "after": level},
    )
    return True
