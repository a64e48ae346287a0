"""veil_sdk.psycopg as a program uses it: sync and async connections, client- and server-side
cursors, every way of fetching, row factories, executemany; one access event per query; grants
approved, revoked and expired while the connection stays open; Veil unreachable."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.datapath.conftest import db, raw_rows
from tests.datapath.shop_source import dsn

pytestmark = db

EMAIL = "SELECT id, email FROM customers ORDER BY id"


class FakeClock:
    """The client's monotonic clock, moved by the test instead of by waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def masked_emails(rows, raw):
    return all(got[0] == before[0] and got[1] != before[1] for got, before in zip(rows, raw, strict=True))


def test_every_fetch_method_masks(connect_as, shop_db):
    raw = raw_rows(shop_db, EMAIL)
    conn = connect_as("bob")
    cur = conn.execute(EMAIL)
    first = [cur.fetchone()]
    some = cur.fetchmany(3)
    rest = list(cur)
    assert masked_emails(first + some + rest, raw)
    assert masked_emails(conn.execute(EMAIL).fetchall(), raw)


def test_dict_rows_are_masked_by_position(connect_as, shop_db):
    raw = raw_rows(shop_db, EMAIL)
    conn = connect_as("bob", row_factory=dict_row)
    rows = conn.execute(EMAIL).fetchall()
    assert [r["id"] for r in rows] == [r[0] for r in raw]
    assert all(r["email"] != before[1] for r, before in zip(rows, raw, strict=True))


def test_server_side_cursors_mask_each_batch_and_report_on_close(connect_as, live_veil, shop_db):
    from audit.models import AccessEvent

    raw = raw_rows(shop_db, EMAIL)
    client = live_veil.client()
    conn = connect_as("bob", client=client, autocommit=False)
    with conn.cursor(name="big") as cur:
        cur.itersize = 2
        cur.execute(EMAIL)
        rows = [cur.fetchone(), *cur.fetchmany(2), *cur]
    conn.commit()
    assert masked_emails(rows, raw)
    assert client.flush(timeout=10)
    event = AccessEvent.objects.get(principal="bob@example.com")
    assert event.row_count == len(raw)
    assert event.masked_columns == ["prod-pg/shop/public.customers.email"]
    assert event.unmasked_columns == ["prod-pg/shop/public.customers.id"]


def test_one_access_event_per_query_with_its_row_count(connect_as, live_veil):
    from audit.models import AccessEvent

    client = live_veil.client()
    conn = connect_as("alice", client=client)
    conn.execute("SELECT email FROM customers WHERE id <= 3").fetchall()
    conn.execute("SELECT id, phone FROM customers WHERE id = 1; SELECT status FROM payments WHERE id = 1")
    assert client.flush(timeout=10)
    first, second = AccessEvent.objects.filter(principal="alice@example.com").order_by("id")
    assert (first.row_count, first.unmasked_columns, first.masked_columns) == (
        3,
        ["prod-pg/shop/public.customers.email"],
        [],
    )
    assert second.row_count == 2
    assert set(second.unmasked_columns) == {
        "prod-pg/shop/public.customers.id",
        "prod-pg/shop/public.payments.status",
    }
    assert second.masked_columns == ["prod-pg/shop/public.customers.phone"]
    assert first.query_id != second.query_id


def test_executemany_returning_masks_every_result(connect_as, scratch_db):
    conn = connect_as("bob", dbname=scratch_db)
    cur = conn.cursor()
    cur.executemany(
        "UPDATE customers SET created_at = created_at WHERE id = %s RETURNING id, email",
        [(1,), (2,)],
        returning=True,
    )
    results = []
    while True:
        results.extend(cur.fetchall())
        if not cur.nextset():
            break
    assert [r[0] for r in results] == [1, 2]
    assert all(email not in ("customer1@example.net", "customer2@example.net") for _, email in results)


def test_async_connections_and_cursors_mask(live_veil, shop_db):
    from veil_sdk import user
    from veil_sdk.psycopg import connect_async

    raw = raw_rows(shop_db, EMAIL)
    client = live_veil.client()

    async def run():
        conn = await connect_async(
            dsn(shop_db),
            client=client,
            principal=user("bob@example.com"),
            instance="prod-pg",
            database="shop",
            autocommit=False,
        )
        async with conn:
            plain = await (await conn.execute(EMAIL)).fetchall()
            async with conn.cursor(name="named") as cur:
                await cur.execute(EMAIL)
                named = await cur.fetchall()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("SELECT id FROM customers WHERE email LIKE 'c%'")
        return plain, named

    plain, named = asyncio.run(run())
    assert masked_emails(plain, raw)
    assert masked_emails(named, raw)


def test_a_grant_approved_meanwhile_shows_on_the_next_query(connect_as, live_veil, shop_db):
    from audit.models import Channel
    from jitaccess.selectors.scopes import Scope
    from jitaccess.services.requests import request_approve, request_create
    from masking.models import Database

    clock = FakeClock()
    client = live_veil.client(clock=clock)  # Veil's ttl_s for masks: 10 s
    conn = connect_as("bob", client=client)
    raw = raw_rows(shop_db, EMAIL)
    assert masked_emails(conn.execute(EMAIL).fetchall(), raw)

    people = live_veil.people
    shop = Database.objects.get(instance__key="prod-pg", name="shop")
    request = request_create(
        requester=people["bob"],
        scope=Scope(shop, "public", "customers", ("email",)),
        duration=timedelta(hours=1),
        reason="INC-1 wrong address",
        channel=Channel.WEB,
    )
    request_approve(request_id=request.pk, approver=people["erin"], channel=Channel.WEB)
    clock.now += 1  # the data path re-asks a mask answer after 1 s (Enforcer.mask_ttl)
    assert conn.execute(EMAIL).fetchall() == raw


def test_a_revoked_grant_masks_within_the_answers_ttl(connect_as, live_veil, shop_db):
    from audit.models import Channel
    from jitaccess.models import AccessRequest
    from jitaccess.services.grants import grant_end

    clock = FakeClock()
    client = live_veil.client(clock=clock)
    conn = connect_as("alice", client=client)
    raw = raw_rows(shop_db, EMAIL)
    assert conn.execute(EMAIL).fetchall() == raw
    grant = AccessRequest.objects.get(requester=live_veil.people["alice"], table_name="customers")
    grant_end(request_id=grant.pk, user=live_veil.people["bob"], action="revoke", channel=Channel.WEB)
    clock.now += 10  # DECISION_TTL_S: the longest Veil lets an answer be reused
    assert masked_emails(conn.execute(EMAIL).fetchall(), raw)


def test_an_expired_grant_masks_with_no_worker_running(connect_as, live_veil, shop_db):
    import time_machine
    from django.utils import timezone

    from jitaccess.models import AccessRequest

    clock = FakeClock()
    client = live_veil.client(clock=clock)
    conn = connect_as("alice", client=client)
    raw = raw_rows(shop_db, EMAIL)
    assert conn.execute(EMAIL).fetchall() == raw
    grant = AccessRequest.objects.get(requester=live_veil.people["alice"], table_name="customers")
    expires_at = grant.expires_at
    with time_machine.travel(expires_at + timedelta(seconds=1), tick=True):
        assert timezone.now() > expires_at
        clock.now += 7200  # the unmask answer was valid until the expiry at the latest
        assert masked_emails(conn.execute(EMAIL).fetchall(), raw)


def test_veil_unreachable_masks_everything(shop_db, live_veil):
    from veil_sdk import VeilClient, user
    from veil_sdk.psycopg import connect

    from tests.sdk.conftest import free_port

    client = VeilClient(f"http://127.0.0.1:{free_port()}", "veil_x_y", timeout=0.2)
    with connect(
        dsn(shop_db), client=client, principal=user("alice@example.com"), instance="prod-pg"
    ) as conn:
        rows = conn.execute("SELECT id, email, 42 AS answer FROM customers").fetchall()
        assert rows and all(r[0] == "******" and r[1] == "******" and r[2] == 42 for r in rows)
        # With no answer every column counts as masked, so a filter on any of them is refused.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT email FROM customers WHERE id = 1")
    client.close(timeout=0.1)


def test_an_unknown_instance_name_masks_everything(live_veil, shop_db):
    from veil_sdk import user
    from veil_sdk.psycopg import connect

    with connect(
        dsn(shop_db),
        client=live_veil.client(),
        principal=user("alice@example.com"),
        instance="no-such-instance",
    ) as conn:
        rows = conn.execute("SELECT id, status FROM payments").fetchall()
    assert rows and all(value == "******" for row in rows for value in row)


def test_a_connection_must_name_its_instance(live_veil, shop_db):
    from veil_sdk import user
    from veil_sdk.psycopg import connect

    with pytest.raises(ValueError, match="instance"):
        connect(dsn(shop_db), client=live_veil.client(), principal=user("alice@example.com"), instance="")


def test_a_server_that_is_not_postgresql_is_refused(live_veil):
    from veil_sdk import user
    from veil_sdk.psycopg import connect

    from tests.datapath.pgbouncer import running_pgbouncer

    with running_pgbouncer({"shop": "postgres"}) as port:
        with pytest.raises(psycopg.NotSupportedError, match="PostgreSQL 10 or later only"):
            connect(
                f"host=127.0.0.1 port={port} user=postgres dbname=pgbouncer",
                client=live_veil.client(),
                principal=user("alice@example.com"),
                instance="prod-pg",
                database="shop",
                autocommit=True,
            )
        # Through pgbouncer to PostgreSQL itself, the adapter works.
        conn = connect(
            f"host=127.0.0.1 port={port} user=postgres dbname=shop",
            client=live_veil.client(),
            principal=user("alice@example.com"),
            instance="prod-pg",
            database="shop",
            autocommit=True,
        )
        assert conn.execute("SELECT 1").fetchall() == [(1,)]
        conn.close()


def test_stream_is_checked_and_masked(connect_as, shop_db):
    raw = raw_rows(shop_db, EMAIL)
    cur = connect_as("bob").cursor()
    assert masked_emails(list(cur.stream(EMAIL)), raw)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        list(cur.stream("SELECT id FROM customers WHERE email LIKE 'c%'"))


def test_results_left_by_a_refused_statement_give_no_rows_in_clear(connect_as):
    cur = connect_as("bob").cursor()
    cur.execute("SELECT id FROM customers WHERE id = 1; SELECT email FROM customers WHERE id = 1")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cur.execute("SELECT id FROM customers WHERE email LIKE 'c%'")
    cur.nextset()  # the earlier statement's second result, still in the cursor
    with pytest.raises(psycopg.InterfaceError):
        cur.fetchall()
