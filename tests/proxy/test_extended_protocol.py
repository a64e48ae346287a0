"""The extended query protocol through veil-proxy: psycopg 3 (prepared statements, binary
results, pipeline mode), asyncpg (extended and binary by default), and a JDBC-style pipelined
sequence written message by message."""

from __future__ import annotations

import asyncio
import struct
from decimal import Decimal
from typing import Any

import asyncpg
import psycopg
import pytest
from veil_sdk.proxy import wire

from tests.proxy.conftest import ALICE_TOKEN, SOURCE_DB, RunningProxy, WireClient

pytestmark = pytest.mark.timeout(60)


def test_psycopg_prepared_statements_are_masked_on_every_execution(proxy: RunningProxy) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True, prepare_threshold=0) as conn:
        rows = [
            conn.execute("SELECT id, email FROM customers WHERE id = %s", (i,), prepare=True).fetchone()
            for i in (1, 2, 1)
        ]

    assert rows == [(1, "****"), (2, "****"), (1, "****")]
    assert [r.rows for r in proxy.enforcer().reports if "WHERE id = $1" in r.sql] == [1, 1, 1]


def test_psycopg_binary_results_mask_text_and_null_other_types(proxy: RunningProxy) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        cur = conn.cursor(binary=True)
        row = cur.execute("SELECT id, name, email, phone, balance FROM customers WHERE id = 1").fetchone()

    # email (text) and phone (varchar) are masked as text; the rest passes as the server sent it
    assert row == (1, "Alice Martin", "****", "****", Decimal("120.50"))


def test_binary_masked_non_text_column_goes_out_as_null(proxy: RunningProxy) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        binary = (
            conn.cursor(binary=True).execute("SELECT length(email) FROM customers WHERE id = 1").fetchone()
        )
        text = conn.cursor()
        text.execute("SELECT length(email) FROM customers WHERE id = 1")
        assert text.pgresult is not None
        raw_text = text.pgresult.get_value(0, 0)

    # an integer derived from a masked column: no text to put in an int4's binary form
    assert binary == (None,)
    # text format: the masker's text as is (a typed text decoder refuses it: it is not an integer)
    assert raw_text == b"****"


def test_psycopg_pipeline_mode(proxy: RunningProxy) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn, conn.pipeline():
        first = conn.execute("SELECT email FROM customers WHERE id = %s", (1,))
        second = conn.execute("SELECT name FROM customers WHERE id = %s", (2,))
        third = conn.execute("SELECT phone FROM customers WHERE id = %s", (3,))
        conn.execute("SELECT pg_catalog.now()")
    assert (first.fetchone(), second.fetchone(), third.fetchone()) == (("****",), ("Bob Durand",), ("****",))


def test_refused_statement_in_a_pipeline_fails_it_up_to_sync(proxy: RunningProxy) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.pipeline():
            conn.execute("SELECT name FROM customers WHERE id = %s", (1,))
            conn.execute("SELECT id FROM customers WHERE email = %s", ("alice@example.com",))
        assert conn.execute("SELECT name FROM customers WHERE id = 2").fetchone() == ("Bob Durand",)


def _asyncpg(proxy: RunningProxy, work: Any) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=proxy.port,
            user="alice@example.com",
            password=ALICE_TOKEN,
            database=SOURCE_DB,
            ssl=False,
        )
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_asyncpg_reads_masked_and_clear_columns(proxy: RunningProxy) -> None:
    async def work(conn: asyncpg.Connection) -> Any:
        fetched = await conn.fetch("SELECT id, name, email, phone, vip, signed_up FROM customers ORDER BY id")
        statement = await conn.prepare("SELECT email, name FROM customers WHERE id = $1")
        again = [await statement.fetchrow(i) for i in (1, 2, 1)]
        return [tuple(r) for r in fetched], [tuple(r) for r in again]

    rows, prepared = _asyncpg(proxy, work)

    assert [r[:4] for r in rows] == [
        (1, "Alice Martin", "****", "****"),
        (2, "Bob Durand", "****", None),
        (3, "Chloé Petit", None, "****"),
    ]
    assert prepared == [("****", "Alice Martin"), ("****", "Bob Durand"), ("****", "Alice Martin")]


def test_asyncpg_cursor_in_a_transaction_fetches_in_chunks(proxy: RunningProxy) -> None:
    async def work(conn: asyncpg.Connection) -> Any:
        async with conn.transaction():
            return [
                tuple(r) async for r in conn.cursor("SELECT id, email FROM customers ORDER BY id", prefetch=1)
            ]

    assert _asyncpg(proxy, work) == [(1, "****"), (2, "****"), (3, None)]
    # one query, one event: chunks of a suspended portal add up
    assert [r.rows for r in proxy.enforcer().reports if r.sql.startswith("SELECT id, email")] == [3]


def test_asyncpg_errors_keep_their_sqlstate(proxy: RunningProxy) -> None:
    async def work(conn: asyncpg.Connection) -> Any:
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await conn.fetch("SELECT id FROM customers WHERE phone = $1", "x")
        with pytest.raises(asyncpg.exceptions.UndefinedColumnError):
            await conn.fetch("SELECT nope FROM customers")
        return await conn.fetchval("SELECT count(*) FROM orders")

    assert _asyncpg(proxy, work) == 3


# --- A pipelined sequence at the message level, as JDBC sends it ------------------------------


def bind(portal: bytes, statement: bytes, params: list[bytes], result_formats: list[int]) -> bytes:
    body = portal + b"\0" + statement + b"\0" + struct.pack("!h", 0) + struct.pack("!h", len(params))
    body += b"".join(struct.pack("!i", len(p)) + p for p in params)
    body += struct.pack("!h", len(result_formats)) + b"".join(struct.pack("!h", f) for f in result_formats)
    return wire.message(b"B", body)


def execute(portal: bytes, max_rows: int = 0) -> bytes:
    return wire.message(b"E", portal + b"\0" + struct.pack("!i", max_rows))


def describe(kind: bytes, name: bytes) -> bytes:
    return wire.message(b"D", kind + name + b"\0")


def test_jdbc_style_pipeline_named_statements_and_portals(proxy: RunningProxy) -> None:
    client = WireClient(proxy.port)
    client.sock.sendall(
        wire.parse(b"s1", "SELECT id, email FROM customers WHERE id = $1")
        + describe(b"S", b"s1")
        + bind(b"p1", b"s1", [b"1"], [0, 0])
        + execute(b"p1")
        + wire.parse(b"", "SELECT name, phone FROM customers ORDER BY id")
        + bind(b"", b"", [], [0, 1])  # phone in binary
        + execute(b"", 2)  # two rows, then suspended
        + execute(b"")  # the rest
        + wire.message(b"C", b"Ss1\0")
        + wire.message(b"S")
    )
    messages = client.until_ready()
    kinds = b"".join(kind for kind, _ in messages)

    assert kinds == b"1tT2DC12DDsDC3Z"
    rows = [wire.data_row_values(raw) for kind, raw in messages if kind == b"D"]
    assert rows == [
        [b"1", b"****"],
        [b"Alice Martin", b"****"],
        [b"Bob Durand", None],
        [b"Chlo\xc3\xa9 Petit", b"****"],
    ]
    # the client's own Describe shows the real types; the proxy's Describe never reaches the client
    described = wire.row_description(next(raw for kind, raw in messages if kind == b"T"))
    assert [(f.name, f.type_oid) for f in described] == [(b"id", 20), (b"email", 25)]


def test_error_mid_pipeline_skips_to_sync_and_the_next_pipeline_works(proxy: RunningProxy) -> None:
    client = WireClient(proxy.port)
    client.sock.sendall(
        wire.parse(b"", "SELECT 1 / (id - id) FROM customers")
        + bind(b"", b"", [], [])
        + execute(b"")
        + wire.parse(b"", "SELECT email FROM customers")
        + bind(b"", b"", [], [])
        + execute(b"")
        + wire.message(b"S")
        + wire.parse(b"", "SELECT id FROM customers WHERE email IS NULL")  # refused
        + bind(b"", b"", [], [])
        + execute(b"")
        + wire.message(b"S")
        + wire.parse(b"", "SELECT email FROM customers WHERE id = 2")
        + bind(b"", b"", [], [])
        + execute(b"")
        + wire.message(b"S")
    )
    first, second, third = client.until_ready(), client.until_ready(), client.until_ready()

    assert [k for k, _ in first] == [b"1", b"2", b"E", b"Z"]
    assert wire.error_fields(first[2][1])["C"] == "22012"
    assert [k for k, _ in second] == [b"E", b"Z"]
    assert wire.error_fields(second[0][1])["C"] == "42501"
    assert [k for k, _ in third] == [b"1", b"2", b"D", b"C", b"Z"]
    assert wire.data_row_values(third[2][1]) == [b"****"]
