"""Fixtures for veil-proxy: a real source PostgreSQL database (``h7_shop`` on the test server),
the proxy itself serving on loopback from a background thread, and Veil's login check.

The proxy runs in this process (its own event loop in a thread), so a test can reach its state
(the stand-in enforcer's reports, the login checker's request count) without mocks; clients
talk to it over real sockets. Where a live Veil runs (``veil_proxy``), people log in with real
personal tokens checked by Veil's own ``/api/v1/query-logins``; the loopback stand-in of that
operation (``LoginServer``) stays for the tests that need to control its answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import psycopg
import pytest
from veil_sdk.proxy import wire
from veil_sdk.proxy.config import Config, parse
from veil_sdk.proxy.loops import loop_factory
from veil_sdk.proxy.server import ProxyServer

from tests.proxy import standin
from tests.sdk.conftest import veil_url  # noqa: F401 - Veil's WSGI application on loopback

SOURCE_DB = "h7_shop"
EVENT_LOOP = os.environ.get("VEIL_PROXY_TEST_EVENT_LOOP", "auto")
"""The loop the in-process proxies run on: as ``veil-proxy run`` picks it (uvloop when installed);
``asyncio`` runs the suite on asyncio's own loop."""
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


class FakeClock:
    """The proxy's Veil client's monotonic clock, moved by the test instead of by waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def text_rows(conn: psycopg.Connection[Any], query: str) -> list[tuple[str | None, ...]]:
    """The rows as the server sent them in text format, undecoded: a masked value is text
    whatever its column's type, which a typed client would fail to read (the point)."""
    result = conn.execute(query).pgresult
    assert result is not None
    return [
        tuple(None if (v := result.get_value(r, c)) is None else v.decode() for c in range(result.nfields))
        for r in range(result.ntuples)
    ]


def personal_token(login: str) -> str:
    """A person's token with the scope ``query``, made as an administrator makes one:
    ``manage.py token create --user alice --name psql --scope query`` (printed once)."""
    from django.core.management import call_command

    out = io.StringIO()
    call_command(
        "token",
        "create",
        "--user",
        login,
        "--name",
        "psql",
        "--scope",
        "query",
        stdout=out,
        stderr=io.StringIO(),
    )
    return out.getvalue().strip()


def proxy_config(
    url: str, token: str, instances: dict[str, Any], veil: dict[str, Any] | None = None, **extra: Any
) -> Config:
    return parse(
        {
            "listen": "127.0.0.1:0",
            "veil": {"url": url, "token": token, "timeout": 2, **(veil or {})},
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
    new_loop, _ = loop_factory(EVENT_LOOP)

    def start(config: Config, datapath: Any = standin, **options: Any) -> RunningProxy:
        loop = new_loop()
        server = ProxyServer(config, datapath=datapath, **options)
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


@pytest.fixture
def veil_proxy(start_proxy: Callable[..., RunningProxy]) -> Callable[..., RunningProxy]:
    """Start veil-proxy with the real data path in front of ``dbname`` on the test server (instance
    ``prod-pg``), asking the live Veil at ``url`` (its service token ``token``: scopes
    ``decisions`` and ``access-events``) about logins and decisions. ``client`` options (a test's
    clock) go to the proxy's VeilClient; ``veil`` options (``guard_mode``) and further tables
    (``metrics``) to its configuration."""

    def start(
        url: str,
        token: str,
        dbname: str,
        *,
        client: dict[str, Any] | None = None,
        veil: dict[str, Any] | None = None,
        **extra: Any,
    ) -> RunningProxy:
        from veil_sdk import VeilClient, datapath

        # Veil's first request in a process is slow (URLs, middleware, imports); a login waiting
        # on it could outlast the proxy's login timeout. Best effort: a relay answers POSTs only.
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"{url}/healthz", timeout=30).close()  # noqa: S310 - loopback http
        instance = {**_server(), "databases": [dbname], "sslmode": "disable"}
        config = proxy_config(url, token, {"prod-pg": instance}, veil, **extra)
        veil_client = VeilClient(url, token, **{"timeout": 5, "flush_interval": 0.1, **(client or {})})
        return start_proxy(config, datapath=datapath, veil_client=veil_client)

    return start


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A self-signed certificate and key for 127.0.0.1/localhost."""
    directory = tmp_path_factory.mktemp("h7_tls")
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return {"cert": str(cert), "key": str(key)}


@dataclass
class PrivateCluster:
    """A PostgreSQL server of our own (initdb in a temporary directory), so tests can require
    SCRAM and TLS of the upstream and restart it, which the shared server must not be."""

    directory: str
    port: int
    user: str = "h7_proxy"
    password: str = "h7-secret-scram"
    database: str = "h7_shop2"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                "pg_ctl",
                "-D",
                f"{self.directory}/data",
                "-w",
                "-t",
                "60",
                *args,
            ],
            check=True,
            capture_output=True,
        )

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "immediate", "-l", f"{self.directory}/log")

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=self.directory, port=self.port, user="postgres", dbname=dbname, autocommit=True
        )


@pytest.fixture(scope="session")
def private_cluster(
    tmp_path_factory: pytest.TempPathFactory, tls_files: dict[str, str]
) -> Iterator[PrivateCluster]:
    directory = tempfile.mkdtemp(prefix="h7_pg_")
    shutil.chown(directory, "postgres")
    for name in ("cert", "key"):
        target = f"{directory}/server.{name}"
        shutil.copy(tls_files[name], target)
        shutil.chown(target, "postgres")
        os.chmod(target, 0o600)
    port = _free_port()
    cluster = PrivateCluster(directory, port)
    subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            "initdb",
            "-D",
            f"{directory}/data",
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        check=True,
        capture_output=True,
    )
    with open(f"{directory}/data/postgresql.conf", "a") as conf:
        conf.write(
            f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{directory}'\n"
            f"ssl = on\nssl_cert_file = '{directory}/server.cert'\nssl_key_file = '{directory}/server.key'\n"
            "fsync = off\nshared_buffers = 16MB\nmax_connections = 60\n"
        )
    cluster.pg_ctl("start", "-l", f"{directory}/log")
    try:
        with cluster.admin() as admin:
            admin.execute(f"CREATE ROLE {cluster.user} LOGIN PASSWORD '{cluster.password}'")
            admin.execute(f"CREATE DATABASE {cluster.database} OWNER {cluster.user}")
        with cluster.admin(cluster.database) as conn:
            conn.execute(f"SET ROLE {cluster.user}")
            conn.execute(SCHEMA)
        yield cluster
    finally:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                "pg_ctl",
                "-D",
                f"{directory}/data",
                "stop",
                "-m",
                "immediate",
            ],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def private_instance(cluster: PrivateCluster, **overrides: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": cluster.port,
        "databases": [cluster.database],
        "user": cluster.user,
        "password": cluster.password,
        "sslmode": "require",
        **overrides,
    }


class WireClient:
    """A bare protocol client: startup and cleartext login, then raw messages."""

    def __init__(self, port: int, database: str = SOURCE_DB) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.sock.sendall(wire.startup_message({"user": "alice@example.com", "database": database}))
        assert self.read()[0] == b"R"
        self.sock.sendall(wire.message(b"p", wire.cstring(ALICE_TOKEN)))
        self.key_data = b""
        while (message := self.read())[0] != b"Z":
            if message[0] == b"K":
                self.key_data = message[1][5:]

    def read(self) -> tuple[bytes, bytes]:
        while len(self.buffer) < 5 or len(self.buffer) < 1 + struct.unpack_from("!i", self.buffer, 1)[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        length = 1 + struct.unpack_from("!i", self.buffer, 1)[0]
        raw, self.buffer = self.buffer[:length], self.buffer[length:]
        return raw[:1], raw

    def until_ready(self) -> list[tuple[bytes, bytes]]:
        messages = []
        while True:
            kind, raw = self.read()
            messages.append((kind, raw))
            if kind == b"Z":
                return messages
