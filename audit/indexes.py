"""Indexes that exist on PostgreSQL only.

SQLite (the embedded default of `make run`) rebuilds a table for most schema changes and re-creates
every index of the model's migration state, so a GIN index there fails every later migration of
its table ("near gin_trgm_ops: syntax error"). Elsewhere these indexes produce no SQL: the
embedded default's log is small enough to scan.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.indexes import GinIndex


class PostgresGinIndex(GinIndex):
    """A `GinIndex` built (and dropped) on PostgreSQL only; an empty statement elsewhere."""

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if schema_editor.connection.vendor != "postgresql":
            return ""
        return super().create_sql(model, schema_editor, using=using, **kwargs)

    def remove_sql(self, model: Any, schema_editor: Any, **kwargs: Any) -> Any:
        if schema_editor.connection.vendor != "postgresql":
            return ""
        return super().remove_sql(model, schema_editor, **kwargs)
