"""veil-proxy under faults: clients that vanish mid-result, an upstream restarted mid-query,
malformed and oversized messages, many connections, cancellation, Veil stopped mid-session. The
proxy must keep serving the others and never send a value it should have masked, nor a partial
row."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from veil_sdk.proxy import wire

from tests.datapath.conftest import live_veil, shop_db  # noqa: F401 - fixtures
from tests.proxy.conftest import (
    FakeClock,
    LoginServer,
    PrivateCluster,
    RunningProxy,
    WireClient,
    personal_token,
    private_instance,
    proxy_config,
    text_rows,
)
from tests.sdk.conftest import loopback  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(120)

BIG = "SELECT g, c.email FROM customers c, generate_series(1, 200000) g WHERE c.id = 1"


def eventually(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    """Wait for something asynchronous to happen (not a timing assertion: the bound is generous)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def still_serves(proxy: RunningProxy, dbname: str | None = None) -> None:
    dsn = proxy.dsn() if dbname is None else proxy.dsn(dbname=dbname)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT id, email FROM customers WHERE id = 1").fetchone() == (1, "****")


def backends(source_db: dict[str, Any], query: str) -> int:
    with psycopg.connect(**source_db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query = %s AND state = 'active'",
            (source_db["dbname"], query),
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_client_gone_mid_result_ends_its_upstream_query(
    proxy: RunningProxy, source_db: dict[str, Any]
) -> None:
    client = WireClient(proxy.port)
    client.sock.sendall(wire.query(BIG))
    assert client.read()[0] == b"T"
    assert wire.data_row_values(client.read()[1])[1] == b"****"
    client.sock.close()

    eventually(lambda: proxy.call(lambda: proxy.server.sessions) == 0, "the session ended")
    eventually(lambda: backends(source_db, BIG) == 0, "the upstream query stopped")
    still_serves(proxy)


def test_upstream_restarted_mid_query_ends_the_query_with_an_error_and_no_partial_row(
    private_cluster: PrivateCluster, login_server: LoginServer, start_proxy: Callable[..., RunningProxy]
) -> None:
    proxy = start_proxy(
        proxy_config(login_server.url, LoginServer.SERVICE_TOKEN, {"pg2": private_instance(private_cluster)})
    )
    client = WireClient(proxy.port, private_cluster.database)
    client.sock.sendall(wire.query(BIG.replace("200000", "5000000")))
    assert client.read()[0] == b"T"
    rows = [client.read()]

    private_cluster.restart()
    try:
        while True:
            rows.append(client.read())
    except ConnectionError:
        pass

    kinds = {kind for kind, _ in rows}
    assert kinds <= {b"D", b"N", b"E"}  # rows, the server's notice that it is shutting down, the error
    errors = [wire.error_fields(raw) for kind, raw in rows if kind == b"E"]
    assert errors and errors[-1]["S"] == "FATAL"
    assert {wire.data_row_values(raw)[1] for kind, raw in rows if kind == b"D"} == {b"****"}
    still_serves(proxy, private_cluster.database)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=300))
def test_fuzzed_messages_close_only_that_connection(proxy: RunningProxy, garbage: bytes) -> None:
    client = WireClient(proxy.port)
    received = b""
    try:  # the proxy may close the connection at any point of this
        client.sock.sendall(garbage)
        client.sock.sendall(wire.query("SELECT email FROM customers"))
        client.sock.shutdown(socket.SHUT_WR)
        while chunk := client.sock.recv(65536):
            received += chunk
    except OSError:
        pass
    client.sock.close()

    assert b"example.com" not in received
    still_serves(proxy)


def test_fuzzed_startup_packets_are_refused(proxy: RunningProxy) -> None:
    for packet in (
        b"\x00\x00\x00\x04",
        b"\x00\x00\xff\xff" + b"x" * 10,
        struct.pack("!ii", 8, 1234),
        b"\x00" * 3,
    ):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(packet)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):
                pass
    still_serves(proxy)


def test_an_oversized_message_closes_that_connection_with_an_error(
    source_db: dict[str, Any], login_server: LoginServer, start_proxy: Callable[..., RunningProxy]
) -> None:
    instance = {
        "host": source_db["host"],
        "port": source_db["port"],
        "databases": [source_db["dbname"]],
        "user": source_db["user"],
        "sslmode": "disable",
    }
    proxy = start_proxy(
        proxy_config(
            login_server.url,
            LoginServer.SERVICE_TOKEN,
            {"prod-pg": instance},
            limits={"max_message_bytes": 4096},
        )
    )
    client = WireClient(proxy.port)
    client.sock.sendall(wire.query("SELECT '" + "x" * 5000 + "'"))

    kind, raw = client.read()
    assert kind == b"E"
    assert wire.error_fields(raw)["C"] == "08P01"
    with pytest.raises(ConnectionError):
        client.read()
    still_serves(proxy)


def test_a_thousand_connections_opened_and_dropped(proxy: RunningProxy) -> None:
    def churn(count: int) -> None:
        for number in range(count):
            if number % 10 == 0:  # every tenth logs in fully (upstream connection and all)
                WireClient(proxy.port).sock.close()
            else:
                with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
                    sock.sendall(wire.startup_message({"user": "alice", "database": "h7_shop"})[: number % 9])

    threads = [threading.Thread(target=churn, args=(250,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    eventually(lambda: proxy.call(lambda: proxy.server.sessions) == 0, "every session ended")
    eventually(lambda: proxy.call(lambda: len(proxy.server.cancel_keys)) == 0, "every cancel key forgotten")
    still_serves(proxy)


def test_cancel_request_reaches_the_upstream_query(proxy: RunningProxy) -> None:
    """At the message level: a client in this process cannot use libpq's cancel, which holds the
    GIL while it waits for the proxy (running in this process) to answer."""
    client = WireClient(proxy.port)
    client.sock.sendall(wire.query("SELECT pg_sleep(60)"))
    client.sock.settimeout(0.2)
    answer: tuple[bytes, bytes] | None = None
    while answer is None:  # a cancel that arrives before the query starts is lost: repeat
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as cancel:
            cancel.sendall(struct.pack("!ii", 16, wire.CANCEL_REQUEST) + client.key_data)
        try:
            while (answer := client.read())[0] == b"T":  # sent before the statement runs
                pass
        except TimeoutError:
            answer = None
    client.sock.settimeout(10)

    assert answer[0] == b"E"
    assert wire.error_fields(answer[1])["C"] == "57014"
    assert client.read()[0] == b"Z"


@pytest.mark.django_db(transaction=True)
def test_veil_stopped_mid_session_masks_what_no_valid_answer_covers_and_refuses_probes(
    live_veil: Any,  # noqa: F811
    shop_db: str,  # noqa: F811
    loopback: Callable[..., Any],  # noqa: F811
    veil_proxy: Callable[..., RunningProxy],
) -> None:
    """Veil behind a relay the test stops: bob's session goes on, columns whose answers are still
    cached as Veil gave them keep them, every other column is masked, and a predicate on one is
    refused as a probe, until Veil answers again."""
    from masking.models import Database
    from masking.selectors import decision_caches
    from tests.datapath.shop_source import dsn
    from tests.sdk.conftest import forward_to

    Database.objects.filter(instance__key="prod-pg", name="shop").update(name=shop_db)
    decision_caches.clear()
    relay = loopback(forward_to(live_veil.url))
    clock = FakeClock()
    proxy = veil_proxy(relay.url, live_veil.token, shop_db, client={"clock": clock})
    with psycopg.connect(dsn(shop_db), autocommit=True) as direct:
        raw = sorted(direct.execute("SELECT id::text, created_at::text FROM customers").fetchall())
    query = "SELECT id, email, created_at FROM customers"  # no ORDER BY: sorting by a masked id is a probe

    with psycopg.connect(proxy.dsn(user="bob", password=personal_token("bob"), dbname=shop_db)) as conn:
        conn.autocommit = True
        before = text_rows(conn, query)
        relay.stop()
        during = text_rows(conn, query)
        unasked = text_rows(conn, "SELECT id, status FROM payments")  # no answer cached for these
        clock.now += 10  # DECISION_TTL_S: the cached answers for id and created_at run out
        expired = text_rows(conn, query)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="created_at"):
            conn.execute("SELECT count(*) FROM customers WHERE created_at > '2026-01-05'")
        relay.start()
        clock.now += 1
        after = text_rows(conn, query)

    def clear(rows: list[tuple[str | None, ...]]) -> list[tuple[str | None, ...]]:
        return sorted((i, created) for i, _, created in rows)

    assert clear(before) == raw and all("customer" not in (e or "") for _, e, _ in before)
    assert clear(during) == raw, "answers still valid are kept"
    assert all("customer" not in (e or "") for _, e, _ in during)
    assert unasked and {value for row in unasked for value in row} == {"******"}
    assert {value for row in expired for value in row} == {"******"}, "nothing else is known: masked"
    assert clear(after) == raw
