"""Audit test helpers: tampering "behind Veil's back" and files kept in a temporary directory."""

from __future__ import annotations

import pytest
from django.db import connection


@pytest.fixture(autouse=True)
def audit_files(settings, tmp_path):
    """Exports and archives go to the test's own directory."""
    settings.AUDIT_EXPORT_DIR = tmp_path / "exports"
    settings.AUDIT_ARCHIVE_DIR = tmp_path / "archive"
    return tmp_path


def raw_sql(sql: str, table: str = "audit_auditevent") -> None:
    """Change a table as a database superuser would: disable its triggers, run the SQL, re-enable."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        cursor.execute(sql)
        cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def rehash(exported: dict) -> str:
    """The chain hash of an event as an export wrote it, recomputed from its hashed fields."""
    from datetime import datetime

    from audit.chain import canonical_event, chain_hash
    from audit.selectors import EVENT_FIELDS

    fields = {k: exported[k] for k in EVENT_FIELDS if k not in ("prev_hash", "hash")}
    fields["occurred_at"] = datetime.fromisoformat(exported["occurred_at"])
    return chain_hash(exported["prev_hash"], canonical_event(**fields))
