"""Trigram indexes for the audit search filters (see `AuditEvent.Meta.indexes`).

pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it, no superuser
needed. The indexes are built CONCURRENTLY, so upgrading a deployment with a long log does not
stop audited actions from writing events meanwhile; hence a non-atomic migration. Elsewhere
(SQLite, the embedded default) they are recorded in the migration state and not built: the demo's
log is small enough to scan. `audit.indexes.PostgresGinIndex` keeps SQLite's table rebuilds in
later migrations from re-creating them.
"""

import django.contrib.postgres.indexes
import django.db.models.functions.comparison
import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently, TrigramExtension
from django.db import migrations, models

import audit.indexes


class AddIndexConcurrentlyOnPostgreSQL(AddIndexConcurrently):
    """`AddIndexConcurrently`, a no-op on databases other than PostgreSQL."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


def _upper_trgm(expression, label):
    return AddIndexConcurrentlyOnPostgreSQL(
        model_name="auditevent",
        index=audit.indexes.PostgresGinIndex(
            django.contrib.postgres.indexes.OpClass(
                django.db.models.functions.text.Upper(expression), name="gin_trgm_ops"
            ),
            name=f"auditevent_{label}_trgm",
        ),
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0004_decisionrecord_time_index_only"),
    ]

    operations = [
        TrigramExtension(),
        _upper_trgm(django.db.models.functions.comparison.Cast("detail", models.TextField()), "detail"),
        _upper_trgm("actor_id", "actor_id"),
        _upper_trgm("actor_name", "actor_name"),
        _upper_trgm("target_id", "target_id"),
    ]
