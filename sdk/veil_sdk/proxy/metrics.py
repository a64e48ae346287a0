"""veil-proxy's own metrics, in Prometheus' text format on ``[metrics] listen`` (off by default).

The proxy counts in plain integers (``ProxyStats``, written only by its event loop, so counting
costs an addition on the query path); a collector turns them, with the Veil client's own counters
(``VeilClient.stats``), into metric families when Prometheus scrapes. prometheus-client (in the
SDK's ``proxy`` extra) is imported only when metrics are served, so the SDK's core keeps no
dependencies. The endpoint runs in a thread of its own (wsgiref, as prometheus-client's own
server does) and, with ``token``, answers only ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import bisect
import hmac
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

if TYPE_CHECKING:
    from veil_sdk.proxy.server import ProxyServer

CHECK_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Upper bounds (seconds) of the statement-check histogram: a memoized check takes tens of µs,
one that asks Veil a round trip to it, one that times out the SDK's timeout (0.5 s)."""

QUERY_OUTCOMES = ("ok", "refused", "error")
LOGIN_FAILURES = ("refused", "veil_unreachable", "unknown_database", "upstream")


@dataclass
class ProxyStats:
    """What the proxy counts. Written by its event loop only; read at scrape time."""

    logins_ok: int = 0
    login_failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LOGIN_FAILURES, 0))
    """Failed logins: Veil refused the token or the person (``refused``), Veil could not be asked
    (``veil_unreachable``), the database is not served here (``unknown_database``), or the
    upstream server refused the proxy's own connection (``upstream``)."""
    queries: dict[str, int] = field(default_factory=lambda: dict.fromkeys(QUERY_OUTCOMES, 0))
    """Statements: completed (``ok``), refused by the proxy before the server saw them
    (``refused``), failed on the server (``error``)."""
    guard_refusals: int = 0
    """Of the refused, those the data path's inference guard refused (a masked column used where
    its value could be inferred, or a COPY TO that would send one)."""
    rows: int = 0
    """DataRows relayed to clients."""
    rows_masked: int = 0
    """Of those, rows of a result with at least one masked column."""
    check_buckets: list[int] = field(default_factory=lambda: [0] * (len(CHECK_BUCKETS) + 1))
    check_sum: float = 0.0

    def observe_check(self, seconds: float) -> None:
        """Time the data path's check of one statement took (lookups and Veil's answer included)."""
        self.check_buckets[bisect.bisect_left(CHECK_BUCKETS, seconds)] += 1
        self.check_sum += seconds


class ProxyCollector:
    """The proxy's metric families, read from its counters when Prometheus scrapes."""

    def __init__(self, server: ProxyServer) -> None:
        self._server = server

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        server, stats = self._server, self._server.stats
        yield GaugeMetricFamily(
            "veil_proxy_connections_open", "Client sessions open (logged in)", value=server.sessions
        )
        logins = CounterMetricFamily(
            "veil_proxy_logins",
            "Client logins by outcome and, when failed, why",
            labels=["outcome", "reason"],
        )
        logins.add_metric(["ok", ""], stats.logins_ok)
        for reason, count in stats.login_failures.items():
            logins.add_metric(["failed", reason], count)
        yield logins
        queries = CounterMetricFamily("veil_proxy_queries", "Statements by outcome", labels=["outcome"])
        for outcome, count in stats.queries.items():
            queries.add_metric([outcome], count)
        yield queries
        yield CounterMetricFamily(
            "veil_proxy_guard_refusals", "Statements the inference guard refused", value=stats.guard_refusals
        )
        yield CounterMetricFamily("veil_proxy_rows", "DataRows relayed to clients", value=stats.rows)
        yield CounterMetricFamily(
            "veil_proxy_rows_masked",
            "DataRows relayed from results with at least one masked column",
            value=stats.rows_masked,
        )
        cumulative, buckets = 0, []
        for bound, count in zip((*map(str, CHECK_BUCKETS), "+Inf"), stats.check_buckets, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "veil_proxy_statement_check_seconds",
            "The proxy's own time per statement before the server sees it (the data path's check)",
            buckets=buckets,
            sum_value=stats.check_sum,
        )
        veil = server.veil.stats
        requests = CounterMetricFamily(
            "veil_proxy_veil_requests", "Requests to Veil by kind (decisions, logins)", labels=["kind"]
        )
        requests.add_metric(["decisions"], veil.decision_requests)
        requests.add_metric(["logins"], getattr(server.logins, "requests", 0))
        yield requests
        failures = CounterMetricFamily(
            "veil_proxy_veil_request_failures",
            "Requests to Veil that failed: decisions (their columns masked) and logins (refused)",
            labels=["kind"],
        )
        failures.add_metric(["decisions"], veil.decision_failures)
        failures.add_metric(["logins"], stats.login_failures["veil_unreachable"])
        yield failures
        yield CounterMetricFamily(
            "veil_proxy_fail_closed_columns",
            "Column answers masked because Veil could not be asked or could not decide (degraded)",
            value=veil.degraded_columns,
        )
        cache = CounterMetricFamily(
            "veil_proxy_decision_cache", "Column decisions answered from the cache or not", labels=["result"]
        )
        cache.add_metric(["hit"], veil.cache_hits)
        cache.add_metric(["miss"], veil.cache_misses)
        yield cache
        events = CounterMetricFamily(
            "veil_proxy_access_events",
            "Access events (one per query) by what became of them",
            labels=["outcome"],
        )
        for outcome in ("queued", "sent", "dropped", "rejected"):
            events.add_metric([outcome], getattr(veil, f"events_{outcome}"))
        yield events


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # a scrape every few seconds is not news
        pass


class MetricsEndpoint:
    """The metrics served over HTTP from a daemon thread until ``close()``."""

    def __init__(self, server: ProxyServer, host: str, port: int, token: str | None) -> None:
        try:
            from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
        except ImportError:
            raise RuntimeError(
                "[metrics] needs prometheus-client: install veil-sdk[proxy], or remove [metrics]"
            ) from None
        registry = CollectorRegistry()
        registry.register(ProxyCollector(server))  # type: ignore[arg-type]
        ProcessCollector(registry=registry)  # the proxy process's memory, CPU and open files
        self._httpd = make_server(
            host, port, _guarded(make_wsgi_app(registry), token), _Server, handler_class=_QuietHandler
        )
        self.port = int(self._httpd.server_port)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="veil-proxy-metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _guarded(app: Callable[..., Any], token: str | None) -> Callable[..., Any]:
    """``app`` behind a bearer token (compared in constant time), or as is without one."""
    if token is None:
        return app
    expected = f"Bearer {token}".encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        given = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
        if hmac.compare_digest(given, expected):
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", "Bearer")],
        )
        return [b"veil-proxy metrics: send Authorization: Bearer <metrics.token>\n"]

    return guarded
