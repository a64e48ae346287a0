"""Logging in through veil-proxy: people as themselves (Veil login + token, checked with Veil),
TLS to the client, and the configured account upstream (SCRAM-SHA-256 over TLS on a PostgreSQL of
our own)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from veil_sdk.proxy import wire
from veil_sdk.proxy.logins import FailureThrottle, LoginChecker

from tests.proxy.conftest import (
    ALICE_TOKEN,
    BOB_TOKEN,
    SOURCE_DB,
    LoginServer,
    PrivateCluster,
    RunningProxy,
    private_instance,
    proxy_config,
)

pytestmark = pytest.mark.timeout(60)


def test_a_person_logs_in_with_their_token_and_is_the_principal(
    proxy: RunningProxy, login_server: LoginServer
) -> None:
    with psycopg.connect(proxy.dsn(user="alice"), autocommit=True) as conn:
        conn.execute("SELECT 1")

    assert proxy.enforcer().reports[-1].principal.id == "alice@example.com"  # as Veil names her
    assert login_server.requests[-1] == {
        "login": "alice",
        "token": ALICE_TOKEN,
        "instance": "prod-pg",
        "database": SOURCE_DB,
        "client_addr": "127.0.0.1",
    }


@pytest.mark.parametrize(
    ("user", "password"),
    [("alice@example.com", "veil_wrong_token"), ("alice@example.com", BOB_TOKEN), ("mallory", ALICE_TOKEN)],
    ids=["wrong-token", "someone-elses-token", "wrong-user"],
)
def test_a_wrong_login_is_refused_with_28p01(proxy: RunningProxy, user: str, password: str) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(proxy.dsn(user=user, password=password))
    assert login_error(proxy, user, password) == {"S": "FATAL", "C": "28P01"}


def test_veil_unreachable_refuses_the_login(proxy: RunningProxy, login_server: LoginServer) -> None:
    login_server.up = False

    assert login_error(proxy, "alice@example.com", ALICE_TOKEN) == {"S": "FATAL", "C": "28P01"}


def test_an_unknown_database_is_refused_with_3d000(proxy: RunningProxy) -> None:
    with pytest.raises(psycopg.OperationalError, match="not served"):
        psycopg.connect(proxy.dsn(dbname="postgres"))
    assert login_error(proxy, "alice@example.com", ALICE_TOKEN, "postgres") == {"S": "FATAL", "C": "3D000"}


def test_a_valid_answer_is_cached_and_a_failure_is_not(login_server: LoginServer) -> None:
    now = [0.0]
    checker = LoginChecker(login_server.url, LoginServer.SERVICE_TOKEN, clock=lambda: now[0])

    for _ in range(3):
        assert checker.check("alice", ALICE_TOKEN, "prod-pg", "shop", None).principal is not None
        assert checker.check("alice", "veil_bad", "prod-pg", "shop", None).principal is None
    assert checker.requests == 1 + 3
    now[0] = 61.0  # past Veil's ttl_s: asked again (a revoked token stops working within a minute)
    checker.check("alice", ALICE_TOKEN, "prod-pg", "shop", None)
    assert checker.requests == 5


def test_repeated_failures_from_one_address_wait_longer_each_time() -> None:
    now = [0.0]
    throttle = FailureThrottle(base=0.5, max_delay=4.0, clock=lambda: now[0])

    delays = [throttle.failed("10.0.0.1") for _ in range(6)]
    other = throttle.failed("10.0.0.2")
    throttle.succeeded("10.0.0.1")

    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert other == 0.5
    assert throttle.failed("10.0.0.1") == 0.5


def test_a_password_over_plaintext_from_another_host_is_refused(
    source_db: dict[str, Any], login_server: LoginServer, start_proxy: Callable[..., RunningProxy]
) -> None:
    address = _non_loopback_address()
    instance = {
        "host": "127.0.0.1",
        "port": source_db["port"],
        "databases": [SOURCE_DB],
        "user": "postgres",
        "sslmode": "disable",
    }
    config = proxy_config(
        login_server.url, LoginServer.SERVICE_TOKEN, {"prod-pg": instance}, listen=f"{address}:0"
    )
    proxy = start_proxy(config)

    with pytest.raises(psycopg.OperationalError, match="only over TLS"):
        psycopg.connect(proxy.dsn().replace("host=127.0.0.1", f"host={address}"))
    assert login_server.requests == []  # the token was never asked for


def test_tls_is_served_and_then_a_remote_password_is_accepted(
    source_db: dict[str, Any],
    login_server: LoginServer,
    start_proxy: Callable[..., RunningProxy],
    tls_files: dict[str, str],
) -> None:
    address = _non_loopback_address()
    instance = {
        "host": "127.0.0.1",
        "port": source_db["port"],
        "databases": [SOURCE_DB],
        "user": "postgres",
        "sslmode": "disable",
    }
    config = proxy_config(
        login_server.url,
        LoginServer.SERVICE_TOKEN,
        {"prod-pg": instance},
        listen=f"{address}:0",
        tls=tls_files,
    )
    proxy = start_proxy(config)
    dsn = (
        proxy.dsn().replace("host=127.0.0.1", f"host={address}").replace("sslmode=disable", "sslmode=require")
    )

    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT email FROM customers WHERE id = 1").fetchone() == ("****",)


def test_upstream_scram_over_tls(
    private_cluster: PrivateCluster, login_server: LoginServer, start_proxy: Callable[..., RunningProxy]
) -> None:
    config = proxy_config(
        login_server.url, LoginServer.SERVICE_TOKEN, {"pg2": private_instance(private_cluster)}
    )
    proxy = start_proxy(config)

    with psycopg.connect(proxy.dsn(dbname=private_cluster.database), autocommit=True) as conn:
        who = conn.execute(
            "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone()
        email = conn.execute("SELECT email FROM customers WHERE id = 1").fetchone()

    assert who == (private_cluster.user, True)
    assert email == ("****",)


def test_upstream_wrong_password_is_reported_to_the_client(
    private_cluster: PrivateCluster, login_server: LoginServer, start_proxy: Callable[..., RunningProxy]
) -> None:
    instance = private_instance(private_cluster, password="not-the-password")
    proxy = start_proxy(proxy_config(login_server.url, LoginServer.SERVICE_TOKEN, {"pg2": instance}))

    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "h7_proxy"'):
        psycopg.connect(proxy.dsn(dbname=private_cluster.database))


def login_error(proxy: RunningProxy, user: str, password: str, dbname: str = SOURCE_DB) -> dict[str, str]:
    """Log in at the message level; the severity and SQLSTATE of the error the proxy answers."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(wire.startup_message({"user": user, "database": dbname}))
        assert sock.recv(9) == wire.authentication(3)
        sock.sendall(wire.message(b"p", wire.cstring(password)))
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    fields = wire.error_fields(answer)
    return {"S": fields["S"], "C": fields["C"]}


def _non_loopback_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this picks the outgoing interface
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address")
    return address
