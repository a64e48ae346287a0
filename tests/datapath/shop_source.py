"""A real PostgreSQL source database holding the demo company's shop tables.

The tables and columns come from the demo catalog (`jitaccess.demo.SHOP_TABLES`, what Veil's
`prod-pg/shop` lists), the rows from a deterministic generator, so that tests compare what the
data path returns with what the same database returns directly, never with rows written by hand.
Used by the adapter's and the proxy's tests.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
from psycopg import sql

from jitaccess.demo import SHOP_TABLES

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
CUSTOMERS = 12


def source_name(prefix: str = "veil_src") -> str:
    """One database per test process (xdist workers, and test runs side by side on one machine,
    never share a source database)."""
    return f"{prefix}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"


def dsn(dbname: str) -> str:
    return f"host=127.0.0.1 port=5432 user=postgres dbname={dbname}"


def _value(table: str, column: str, data_type: str, i: int) -> object:
    if column == "id":
        return i
    if column.endswith("_id"):
        return (i % CUSTOMERS) + 1
    if column == "email":
        return f"customer{i}@example.net"
    if column == "phone":
        return f"+1-555-01{i:02d}"
    if column in ("first_name", "last_name"):
        return f"{column.split('_')[0].title()}{i}"
    if column == "body":
        return f"Customer {i} called from +1-555-01{i:02d} about order {i}"
    if column == "status":
        return "paid" if i % 2 else "refunded"
    if column == "card_number":
        return f"4111 1111 1111 {1000 + i}"
    if data_type == "date":
        return date(1980 + i, 1 + i % 12, 1 + i % 28)
    if data_type.startswith("timestamp"):
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=i)
    if data_type == "inet":
        return f"10.0.0.{i}"
    if data_type in ("integer", "bigint"):
        return 1000 * i
    if data_type == "numeric":
        return Decimal(i) / 4
    return f"{table} {column} {i}"


def create_shop(dbname: str) -> None:
    """(Re)create the source database with every shop table of the demo catalog and its rows."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    with psycopg.connect(dsn(dbname), autocommit=True) as conn:
        for table, columns in SHOP_TABLES.items():
            conn.execute(
                sql.SQL("CREATE TABLE {} ({})").format(
                    sql.Identifier(table),
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(dtype))
                        for name, dtype, _, _ in columns
                    ),
                )
            )
            names = [name for name, _, _, _ in columns]
            with conn.cursor().copy(
                sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names))
                )
            ) as copy:
                for i in range(1, CUSTOMERS + 1):
                    copy.write_row([_value(table, name, dtype, i) for name, dtype, _, _ in columns])


def drop(dbname: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
