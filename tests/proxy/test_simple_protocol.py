"""The simple query protocol through veil-proxy, with the real psql binary and psycopg."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import psycopg
import pytest

from tests.proxy.conftest import ALICE_TOKEN, SOURCE_DB, RunningProxy

pytestmark = pytest.mark.timeout(60)


def psql(
    proxy: RunningProxy,
    *args: str,
    user: str = "alice@example.com",
    password: str = ALICE_TOKEN,
    dbname: str = SOURCE_DB,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGPASSWORD": password, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"}
    return subprocess.run(
        [
            "psql",
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            str(proxy.port),
            "-U",
            user,
            "-d",
            dbname,
            "-v",
            "ON_ERROR_STOP=1",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        input=stdin,
        check=False,
    )


def test_psql_sees_masked_columns_masked_and_others_clear(proxy: RunningProxy) -> None:
    result = psql(proxy, "-A", "-t", "-c", "SELECT id, name, email, phone FROM customers ORDER BY id")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "1|Alice Martin|****|****",
        "2|Bob Durand|****|",  # NULL stays NULL when the masker says so
        "3|Chloé Petit||****",
    ]


def test_each_query_is_reported_once_with_its_row_count(proxy: RunningProxy) -> None:
    result = psql(proxy, "-c", "SELECT id FROM customers", "-c", "SELECT email FROM customers WHERE id < 3")

    assert result.returncode == 0, result.stderr
    reports = [(r.principal.id, r.sql, r.rows) for r in proxy.enforcer().reports]
    assert ("alice@example.com", "SELECT id FROM customers", 3) in reports
    assert ("alice@example.com", "SELECT email FROM customers WHERE id < 3", 2) in reports


def test_several_result_sets_in_one_query_are_each_masked(proxy: RunningProxy) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute(
            "SELECT email FROM customers WHERE id = 1; SELECT id, name FROM customers WHERE id = 1;"
            " SELECT phone, name FROM customers WHERE id = 1"
        )
        results = [cur.fetchall()]
        while cur.nextset():
            results.append(cur.fetchall())

    assert results == [[("****",)], [(1, "Alice Martin")], [("****", "Alice Martin")]]


def test_a_masked_column_in_where_is_refused_and_the_session_goes_on(proxy: RunningProxy) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="request access"):
            conn.execute("SELECT id FROM customers WHERE email = 'alice@example.com'")
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (3,)


def test_a_refusal_inside_a_transaction_fails_the_transaction_as_the_server_would(
    proxy: RunningProxy,
) -> None:
    with psycopg.connect(proxy.dsn()) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT id FROM customers WHERE phone LIKE '+33%'")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT name FROM customers WHERE id = 2").fetchone() == ("Bob Durand",)


def test_unparseable_sql_is_refused_with_syntax_error(proxy: RunningProxy) -> None:
    result = psql(proxy, "-c", "SELEC email FROM customers")

    assert result.returncode != 0
    assert "cannot parse" in result.stderr


def test_server_errors_and_notices_pass_through_with_their_sqlstate(proxy: RunningProxy) -> None:
    notices: list[str | None] = []
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.add_notice_handler(lambda notice: notices.append(notice.message_primary))
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        conn.execute("DO $$ BEGIN RAISE NOTICE 'hello from the server'; END $$")

    assert notices == ["hello from the server"]


def test_psql_describe_and_copy_of_unmasked_columns_work(proxy: RunningProxy) -> None:
    described = psql(proxy, "-c", r"\d customers")
    copied = psql(proxy, "-c", r"\copy (SELECT id, name FROM customers ORDER BY id) TO STDOUT")

    assert described.returncode == 0, described.stderr
    assert "email" in described.stdout
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.splitlines() == ["1\tAlice Martin", "2\tBob Durand", "3\tChloé Petit"]


def test_copy_to_with_a_masked_column_is_refused_and_sends_no_data(proxy: RunningProxy) -> None:
    result = psql(proxy, "-c", r"\copy customers TO STDOUT")

    assert result.returncode != 0
    assert "COPY would send masked columns" in result.stderr
    assert "example.com" not in result.stdout


def test_copy_from_is_passed(proxy: RunningProxy, source_db: dict[str, Any]) -> None:
    result = psql(proxy, "-c", r"\copy orders FROM STDIN", stdin="90\t3\t1.50\n91\t3\t2.50\n\\.\n")

    assert result.returncode == 0, result.stderr
    with psycopg.connect(**source_db, autocommit=True) as direct:
        assert direct.execute("SELECT count(*) FROM orders WHERE id IN (90, 91)").fetchone() == (2,)
        direct.execute("DELETE FROM orders WHERE id IN (90, 91)")


def test_transaction_status_is_relayed(proxy: RunningProxy) -> None:
    with psycopg.connect(proxy.dsn()) as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        conn.execute("SELECT 1")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.commit()
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
