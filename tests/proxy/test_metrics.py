"""veil-proxy's Prometheus metrics (``[metrics] listen``), scraped over HTTP from a real proxy with
the real data path, asking a real Veil through a relay the test stops."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.proxy.conftest import (
    SOURCE_DB,
    FakeClock,
    LoginServer,
    RunningProxy,
    personal_token,
    proxy_config,
    text_rows,
)
from tests.proxy.test_veil import veil_service  # noqa: F401 - fixture
from tests.sdk.conftest import forward_to, loopback  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(120)

METRICS_TOKEN = "metrics-scrape-secret"
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(proxy: RunningProxy, token: str = METRICS_TOKEN) -> Series:
    """Every sample the proxy's metrics endpoint answers, by name and labels."""
    assert proxy.server.metrics is not None
    request = urllib.request.Request(
        f"http://127.0.0.1:{proxy.server.metrics.port}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback http
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


def warm_up(veil: dict[str, Any]) -> None:
    """Veil's first login check in a process is slow (imports, URLs): made here, not by a login
    the test counts (which the proxy's 2 s login timeout could fail as Veil unreachable)."""
    request = urllib.request.Request(  # noqa: S310 - loopback http
        veil["url"] + "/api/v1/query-logins",
        data=b"{}",
        method="POST",
        headers={"Authorization": f"Bearer {veil['token']}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:  # an empty body: 400
        urllib.request.urlopen(request, timeout=60)  # noqa: S310 - loopback http
    refused.value.close()


@pytest.mark.django_db(transaction=True)
def test_the_proxy_counts_sessions_logins_queries_rows_refusals_and_veil_lookups(
    veil_service: dict[str, Any],  # noqa: F811
    source_db: dict[str, Any],
    veil_proxy: Callable[..., RunningProxy],
    loopback: Callable[..., Any],  # noqa: F811
) -> None:
    warm_up(veil_service)
    relay = loopback(forward_to(veil_service["url"]))
    clock = FakeClock()
    proxy = veil_proxy(
        relay.url,
        veil_service["token"],
        SOURCE_DB,
        client={"clock": clock},
        metrics={"listen": "127.0.0.1:0", "token": METRICS_TOKEN},
    )
    alice = proxy.dsn(user="alice@example.com", password=personal_token("alice"))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(proxy.dsn(user="alice@example.com", password="veil_not_a_token"))
    with pytest.raises(psycopg.OperationalError, match="is not served"):
        psycopg.connect(alice.replace(f"dbname={SOURCE_DB}", "dbname=nowhere"))

    with psycopg.connect(alice, autocommit=True) as conn:
        emails = [row[0] for row in conn.execute("SELECT email FROM customers").fetchall()]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT id FROM customers WHERE email LIKE 'a%'")  # the guard refuses
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        during = scrape(proxy)
        relay.stop()  # Veil unreachable: what is asked now is masked in full
        clock.now += 60  # every cached answer has run out
        unasked = text_rows(conn, "SELECT id, name FROM customers")

    for _ in range(200):  # the session's end is counted once the proxy has seen the client go
        after = scrape(proxy)
        if value(after, "veil_proxy_connections_open") == 0:
            break
        time.sleep(0.05)

    assert "alice@example.com" not in emails and {v for row in unasked for v in row} == {"******"}
    assert value(during, "veil_proxy_connections_open") == 1
    assert value(after, "veil_proxy_connections_open") == 0
    assert value(after, "veil_proxy_logins_total", outcome="ok", reason="") == 1
    assert value(after, "veil_proxy_logins_total", outcome="failed", reason="refused") == 1
    assert value(after, "veil_proxy_logins_total", outcome="failed", reason="unknown_database") == 1
    assert value(after, "veil_proxy_queries_total", outcome="ok") == 2
    assert value(after, "veil_proxy_queries_total", outcome="refused") == 1
    assert value(after, "veil_proxy_queries_total", outcome="error") == 1
    assert value(after, "veil_proxy_guard_refusals_total") == 1
    assert value(after, "veil_proxy_rows_total") == 6
    assert value(after, "veil_proxy_rows_masked_total") == 6
    assert value(after, "veil_proxy_statement_check_seconds_count") == 4
    assert value(after, "veil_proxy_statement_check_seconds_bucket", le="+Inf") == 4
    assert value(during, "veil_proxy_veil_requests_total", kind="decisions") >= 1
    assert value(during, "veil_proxy_veil_request_failures_total", kind="decisions") == 0
    assert value(after, "veil_proxy_veil_request_failures_total", kind="decisions") >= 1
    assert value(after, "veil_proxy_fail_closed_columns_total") >= 2
    assert value(after, "veil_proxy_veil_requests_total", kind="logins") == 2
    assert value(after, "veil_proxy_access_events_total", outcome="queued") >= 2
    assert value(after, "process_resident_memory_bytes") > 0


def test_a_scrape_without_the_token_is_refused(
    source_db: dict[str, Any], start_proxy: Callable[..., RunningProxy], login_server: LoginServer
) -> None:
    instance = {**{k: source_db[k] for k in ("host", "port", "user")}, "databases": [SOURCE_DB]}
    proxy = start_proxy(
        proxy_config(
            login_server.url,
            LoginServer.SERVICE_TOKEN,
            {"prod-pg": {**instance, "sslmode": "disable"}},
            metrics={"listen": "127.0.0.1:0", "token": METRICS_TOKEN},
        )
    )

    for token in ("", "wrong"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(proxy, token)
        assert refused.value.code == 401
        assert refused.value.headers["WWW-Authenticate"] == "Bearer"
    assert value(scrape(proxy), "veil_proxy_connections_open") == 0
