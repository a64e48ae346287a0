"""The sample shop people point veil-proxy at (docker compose's shop-db, make proxy-demo) holds the
same tables and rows as the tests' source database, because both come from one generator."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from jitaccess.demo import SHOP_TABLES
from tests.datapath import shop_source

ROOT = Path(__file__).resolve().parents[2]
SHOP_SQL = ROOT / "deploy" / "shop" / "shop.sql"


@pytest.fixture
def two_shops() -> Iterator[tuple[str, str]]:
    """The tests' source database, and one loaded from deploy/shop/shop.sql by psql as the
    postgres image's initdb step loads it."""
    ours, loaded = shop_source.source_name("veil_deploy_src"), shop_source.source_name("veil_deploy_sql")
    shop_source.create_shop(ours)
    with psycopg.connect(shop_source.ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(loaded)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(loaded)))
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(SHOP_SQL), shop_source.dsn(loaded)],
        check=True,
        capture_output=True,
    )
    yield ours, loaded
    shop_source.drop(ours)
    shop_source.drop(loaded)


def test_committed_shop_sql_is_what_the_generator_prints():
    printed = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "shop" / "sample_sql.py")],
        check=True,
        capture_output=True,
        text=True,
        cwd="/",  # the script finds the project itself
    ).stdout

    assert printed == SHOP_SQL.read_text(), "run: python deploy/shop/sample_sql.py > deploy/shop/shop.sql"


def test_shop_sql_loads_the_same_tables_and_rows_as_the_tests_source(two_shops):
    ours, loaded = two_shops

    def contents(dbname: str) -> dict[str, tuple[list[tuple[str, str]], list[tuple[object, ...]]]]:
        with psycopg.connect(shop_source.dsn(dbname)) as conn:
            return {
                table: (
                    conn.execute(
                        "SELECT column_name::text, data_type::text FROM information_schema.columns"
                        " WHERE table_name = %s ORDER BY ordinal_position",
                        (table,),
                    ).fetchall(),
                    conn.execute(
                        sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(table))
                    ).fetchall(),
                )
                for table in SHOP_TABLES
            }

    expected = contents(ours)
    assert all(rows for _, rows in expected.values())
    assert contents(loaded) == expected
