"""Fixtures for veil-proxy: a real source PostgreSQL database (``h7_shop`` on the test server),
the proxy itself serving on loopback from a background thread, and Veil's login check.

The proxy runs in this process (its own event loop in a thread), so a test can reach its state
(the stand-in enforcer's reports, the login checker's request count) without mocks; clients
talk to it over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import psycopg
import pytest
from veil_sdk.proxy.config import Config, parse
from veil_sdk.proxy.server import ProxyServer

from tests.proxy import standin

SOURCE_DB = "h7_shop"
ALICE_TOKEN = "veil_alice0000001_secret"
BOB_TOKEN = "veil_bob000000001_secret"

SCHEMA = """
CREATE TABLE customers (
    id bigint PRIMARY KEY, name text NOT NULL, email text, phone varchar(32), vip boolean,
    balance numeric(10, 2), signed_up date
);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers, total numeric(10, 2));
CREATE VIEW customer_contacts AS SELECT id, email FROM customers;
INSERT INTO customers VALUES
    (1, 'Alice Martin', 'alice@example.com', '+33 6 12 34 56 78', true, 120.50, '2024-01-02'),
    (2, 'Bob Durand', 'bob@example.com', NULL, false, 0, '2024-02-03'),
    (3, 'Chloé Petit', NULL, '+33 7 00 00 00 00', NULL, -5.25, NULL);
INSERT INTO orders VALUES (10, 1, 99.90), (11, 1, 10.00), (12, 2, 5.00);
"""


def _server() -> dict[str, Any]:
    url = urlparse(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/h7"))
    return {"host": url.hostname or "127.0.0.1", "port": url.port or 5432, "user": url.username or "postgres"}


@pytest.fixture(scope="session")
def source_db() -> dict[str, Any]:
    """The demo-like source database, created afresh once per run."""
    server = _server()
    with psycopg.connect(**server, dbname="postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {SOURCE_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {SOURCE_DB}")
    with psycopg.connect(**server, dbname=SOURCE_DB, autocommit=True) as conn:
        conn.execute(SCHEMA)
    return {**server, "dbname": SOURCE_DB}


class LoginServer:
    """Veil's query-login operation as /tmp/veil/query-login-api.md specifies it, on loopback:
    a stand-in until Veil's own lands. Knows two people and their tokens."""

    SERVICE_TOKEN = "veil_proxy000001_service"

    def __init__(self) -> None:
        self.people = {ALICE_TOKEN: "alice@example.com", BOB_TOKEN: "bob@example.com"}
        self.requests: list[dict[str, Any]] = []
        self.up = True
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                outer.requests.append(body)
                if not outer.up:
                    status, answer = 503, {"error": {"status": 503, "message": "down"}}
                elif self.headers.get("Authorization") != f"Bearer {outer.SERVICE_TOKEN}":
                    status, answer = 401, {"error": {"status": 401, "message": "bad token"}}
                elif self.path != "/api/v1/query-logins" or set(body) != {
                    "login",
                    "token",
                    "instance",
                    "database",
                    "client_addr",
                }:
                    status, answer = 400, {"error": {"status": 400, "message": "bad body"}}
                else:
                    person = outer.people.get(body["token"])
                    status = 200
                    if person is None:
                        answer = {"valid": False, "reason": "invalid_token"}
                    elif person.split("@")[0] != body["login"].split("@")[0]:
                        answer = {"valid": False, "reason": "wrong_user"}
                    else:
                        answer = {"valid": True, "principal": {"user": person}, "ttl_s": 60}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def login_server() -> Iterator[LoginServer]:
    server = LoginServer()
    yield server
    server.stop()


def proxy_config(veil_url: str, token: str, instances: dict[str, Any], **extra: Any) -> Config:
    return parse(
        {
            "listen": "127.0.0.1:0",
            "veil": {"url": veil_url, "token": token, "timeout": 2},
            "instances": instances,
            "login": {"failure_delay": 0, "max_delay": 0},
            **extra,
        }
    )


@dataclass
class RunningProxy:
    server: ProxyServer
    port: int
    loop: asyncio.AbstractEventLoop

    def dsn(
        self, user: str = "alice@example.com", password: str = ALICE_TOKEN, dbname: str = SOURCE_DB
    ) -> str:
        return (
            f"host=127.0.0.1 port={self.port} user={user} password={password} dbname={dbname} sslmode=disable"
        )

    def enforcer(self, database: str = SOURCE_DB) -> standin.Enforcer:
        return next(t.enforcer for (_, db), t in self.server.targets.items() if db == database)

    def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the proxy's event loop (to read its state consistently)."""
        future: Future[Any] = Future()
        self.loop.call_soon_threadsafe(lambda: future.set_result(function()))
        return future.result(10)


@pytest.fixture
def start_proxy() -> Iterator[Callable[..., RunningProxy]]:
    """Start proxies (each on its own event loop thread); all are stopped at teardown."""
    running: list[tuple[RunningProxy, threading.Thread]] = []

    def start(config: Config) -> RunningProxy:
        loop = asyncio.new_event_loop()
        server = ProxyServer(config, datapath=standin)
        port = loop.run_until_complete(server.start())
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        proxy = RunningProxy(server, port, loop)
        running.append((proxy, thread))
        return proxy

    yield start
    for proxy, thread in running:
        asyncio.run_coroutine_threadsafe(proxy.server.close(), proxy.loop).result(15)
        proxy.loop.call_soon_threadsafe(proxy.loop.stop)
        thread.join(10)


@pytest.fixture
def proxy(
    source_db: dict[str, Any], login_server: LoginServer, start_proxy: Callable[..., RunningProxy]
) -> RunningProxy:
    """veil-proxy in front of h7_shop (instance ``prod-pg``), logins checked by the stand-in."""
    instance = {
        "host": source_db["host"],
        "port": source_db["port"],
        "databases": [SOURCE_DB],
        "user": source_db["user"],
        "sslmode": "disable",
    }
    return start_proxy(proxy_config(login_server.url, LoginServer.SERVICE_TOKEN, {"prod-pg": instance}))
