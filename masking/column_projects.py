"""Which project a database belongs to, for audit's reports: an access event names columns
(`instance/database/schema.table.column`), and audit scopes its readers by project without
importing the catalog, so it asks this (registered in `MaskingConfig.ready`)."""

from __future__ import annotations

from collections.abc import Collection

from django.db.models import Q

from masking.models import Database


def database_projects(databases: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(instance key, database name) -> project key, for those the catalog knows. One query."""
    if not databases:
        return {}
    wanted = Q()
    for instance, name in databases:
        wanted |= Q(instance__key=instance, name=name)
    rows = Database.objects.filter(wanted).values_list("instance__key", "name", "project__key")
    return {(instance, name): project for instance, name, project in rows}
