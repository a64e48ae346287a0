"""Fixtures for the SDK client: a real Veil (its production WSGI application, `config.wsgi`, on a
loopback server) with a small catalog, and loopback HTTP servers the tests control (a relay in
front of Veil that can be stopped and started, stubs answering whatever a test needs, a port nobody
listens on, a server that never answers)."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

Responder = Callable[[str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]
"""(path, headers, body) -> (status, headers, body)."""


@dataclass
class Veil:
    url: str
    token: str
    alice: Any
    project: Any


@pytest.fixture
def veil_url() -> Iterator[str]:
    """`config.wsgi.application` served on loopback, as gunicorn serves it (the decision endpoint
    in front of Django), rather than pytest-django's live server, which serves Django's handler
    alone. One server thread, which closes its database connection when the server stops."""
    from django.db import connections

    from config.wsgi import application

    server = make_server("127.0.0.1", 0, application, handler_class=_QuietHandler)

    def serve() -> None:
        try:
            server.serve_forever(poll_interval=0.05)
        finally:
            connections.close_all()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def veil(veil_url: str) -> Iterator[Veil]:
    """Veil serving decisions for prod-pg/shop/public.customers: `email` has the semantic type
    `email`, `id` and `phone` are classified below the masking threshold. The token may ask for
    decisions and report access events."""
    from audit.models import Channel
    from audit.services import SYSTEM
    from identity.models import Scope
    from masking.models import SemanticType
    from masking.selectors import decision_caches
    from masking.services.catalog import catalog_upsert
    from tests.factories import catalog_payload, make_project, make_token, make_user

    project = make_project("shop", title="Shop")
    SemanticType.objects.create(key="email", title="Email", algorithm={"type": "email"})
    payload = catalog_payload(
        columns=[
            # Classified explicitly: Veil masks unreviewed columns whose names look sensitive.
            {"name": "id", "data_type": "bigint", "classification_level": 0},
            {"name": "email", "data_type": "text", "classification_level": 3, "semantic_type": "email"},
            {"name": "phone", "data_type": "text", "classification_level": 1},
        ]
    )
    catalog_upsert(
        instance_spec=payload["instance"],
        databases=payload["databases"],
        prune=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    alice = make_user("alice", email="alice@example.com")
    _, token = make_token([Scope.DECISIONS, Scope.ACCESS_EVENTS], account_name="sql-proxy")
    # The server runs in this process: drop the policy a previous test's data left cached.
    decision_caches.clear()
    yield Veil(url=veil_url, token=token, alice=alice, project=project)
    decision_caches.clear()


def policy_changed() -> None:
    """Data was changed through the ORM, bypassing the services that move the decision epoch."""
    from masking.selectors import decision_caches

    decision_caches.clear()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LoopbackServer:
    """An HTTP server on 127.0.0.1 answering POSTs with `responder`; it keeps its port across
    stop() and start(), so a client pointed at it sees it go down (connection refused) and come back."""

    responder: Responder
    port: int = field(default_factory=free_port)
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    outer.requests.append({"path": self.path, **json.loads(body)})
                except ValueError:
                    outer.requests.append({"path": self.path})
                status, headers, answer = outer.responder(self.path, dict(self.headers), body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def count(self, path: str) -> int:
        return sum(1 for request in self.requests if request["path"] == path)


def forward_to(upstream: str) -> Responder:
    """Relay each request to `upstream` unchanged and its answer back."""

    def respond(path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        relayed = urllib.request.Request(  # noqa: S310 - upstream is the live server's http URL
            upstream + path,
            data=body,
            method="POST",
            headers={k: v for k, v in headers.items() if k in ("Authorization", "Content-Type")},
        )
        try:
            with urllib.request.urlopen(relayed, timeout=10) as response:  # noqa: S310
                return response.status, {"Content-Type": "application/json"}, response.read()
        except urllib.error.HTTPError as error:
            return error.code, {"Content-Type": "application/json"}, error.read()

    return respond


@pytest.fixture
def loopback() -> Iterator[Callable[[Responder], LoopbackServer]]:
    """Start loopback servers; all are stopped at teardown."""
    servers: list[LoopbackServer] = []

    def start(responder: Responder) -> LoopbackServer:
        server = LoopbackServer(responder).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def relay(veil: Veil, loopback: Callable[[Responder], LoopbackServer]) -> LoopbackServer:
    """Veil behind a relay that records requests and that a test can stop and start."""
    return loopback(forward_to(veil.url))


@pytest.fixture
def closed_url() -> str:
    """A loopback URL nothing listens on: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback URL whose listener accepts connections (in the kernel) but never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
def clients() -> Iterator[Callable[..., Any]]:
    """Build VeilClients that are closed (their reporting threads stopped) at teardown."""
    from veil_sdk import VeilClient

    made: list[VeilClient] = []

    def make(base_url: str, token: str = "veil_test_secret", **options: Any) -> VeilClient:
        client = VeilClient(base_url, token, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close(timeout=0.5)
