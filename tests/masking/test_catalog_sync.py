"""`manage.py catalog sync` against the real PostgreSQL, with a schema the test creates."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from masking.models import Column

pytestmark = pytest.mark.django_db


def _dsn() -> str:
    db = settings.DATABASES["default"]
    return f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def scanned_schema() -> Iterator[str]:
    """A throwaway schema with a customers table, created and dropped outside the test transaction."""
    name = f"sync_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
        conn.execute(
            f"CREATE TABLE {name}.customers (id bigserial primary key, email text, phone_number text,"
            f" date_of_birth date, last_login_ip inet, note text, created_at timestamptz)"
        )
    try:
        yield name
    finally:
        with psycopg.connect(_dsn(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def _sync(schema: str, *extra: str) -> None:
    """`manage.py catalog sync` of one schema of the test database into instance test-pg (dev)."""
    call_command(
        "catalog",
        "sync",
        "--dsn",
        _dsn(),
        "--instance",
        "test-pg",
        "--environment",
        "dev",
        "--schema",
        schema,
        *extra,
    )


def test_sync_reads_information_schema_and_suggests_classifications(shop, scanned_schema, capsys):
    _sync(scanned_schema, "--project", "shop")

    columns = {c.name: c for c in Column.objects.filter(table__schema__name=scanned_schema)}
    assert list(columns) == [
        "id",
        "email",
        "phone_number",
        "date_of_birth",
        "last_login_ip",
        "note",
        "created_at",
    ]
    assert columns["date_of_birth"].data_type == "date"
    assert columns["last_login_ip"].data_type == "inet"
    suggested = {n: c.suggested_category for n, c in columns.items() if c.suggested_category}
    assert suggested == {
        "email": "email",
        "phone_number": "phone",
        "date_of_birth": "birth_date",
        "last_login_ip": "ip_address",
    }
    assert all(c.classification_level is None for c in columns.values())
    out = capsys.readouterr().out
    assert "7 columns created" in out
    assert "suggestion (not a fact, review it)" in out


def test_sync_twice_is_idempotent_and_picks_up_new_columns(shop, scanned_schema, capsys):
    _sync(scanned_schema, "--project", "shop")
    with psycopg.connect(_dsn(), autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {scanned_schema}.customers ADD COLUMN ssn text")

    _sync(scanned_schema, "--project", "shop")

    assert "1 columns created, 0 updated, 7 unchanged" in capsys.readouterr().out
    assert Column.objects.get(name="ssn").suggested_category == "ssn"


def test_sync_without_a_project_for_a_new_database_says_which_option_is_missing(shop, scanned_schema):
    with pytest.raises(CommandError, match="--project: required"):
        _sync(scanned_schema)


def test_sync_with_an_unreachable_dsn_fails_with_a_message():
    with pytest.raises(CommandError, match="cannot read the schema"):
        call_command(
            "catalog",
            "sync",
            "--dsn",
            "postgresql://nobody@127.0.0.1:1/none",
            "--instance",
            "x",
            "--environment",
            "dev",
            "--project",
            "shop",
        )
