"""Fixtures for the data path: the demo company's shop as a real source database, and the real
Veil (its WSGI application on loopback, with the demo company's catalog, policy and grants)
deciding for the adapter through the SDK's client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.datapath import shop_source
from tests.sdk.conftest import veil_url  # noqa: F401 - the live Veil these tests ask

db = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="session")
def shop_db() -> Iterator[str]:
    """The shop source database (created once per test process, never changed by the tests)."""
    name = shop_source.source_name()
    shop_source.create_shop(name)
    yield name
    shop_source.drop(name)


@pytest.fixture
def scratch_db() -> Iterator[str]:
    """A source database a test may change (rename columns, drop tables)."""
    name = shop_source.source_name("veil_scratch")
    shop_source.create_shop(name)
    yield name
    shop_source.drop(name)


@dataclass
class LiveVeil:
    url: str
    token: str
    people: dict[str, Any]
    clients: list[Any]

    def client(self, **kwargs: Any) -> Any:
        from veil_sdk import VeilClient

        client = VeilClient(self.url, self.token, **kwargs)
        self.clients.append(client)
        return client


@pytest.fixture
def live_veil(veil_url: str) -> Iterator[LiveVeil]:  # noqa: F811
    """Veil with the demo company: alice holds a grant on customers.email and birth_date, carol
    (support) a standing exemption on customers.phone, bob nothing in the shop."""
    from identity.models import Scope, User
    from jitaccess.demo import load_demo_data
    from masking.selectors import decision_caches
    from tests.factories import make_token

    load_demo_data()
    _, token = make_token([Scope.DECISIONS, Scope.ACCESS_EVENTS], account_name="sql-proxy")
    decision_caches.clear()
    live = LiveVeil(veil_url, token, {u.username: u for u in User.objects.all()}, [])
    yield live
    for client in live.clients:
        client.close(timeout=5)
    decision_caches.clear()


@pytest.fixture
def connect_as(live_veil: LiveVeil, shop_db: str) -> Iterator[Callable[..., Any]]:
    """Open an adapter connection to the shop source for a demo person (closed after the test)."""
    from veil_sdk import user
    from veil_sdk.psycopg import connect

    opened: list[Any] = []

    def open_(username: str, *, client: Any = None, dbname: str | None = None, **kwargs: Any) -> Any:
        conn = connect(
            shop_source.dsn(dbname or shop_db),
            client=client or live_veil.client(),
            principal=user(f"{username}@example.com"),
            instance="prod-pg",
            database="shop",
            autocommit=kwargs.pop("autocommit", True),
            **kwargs,
        )
        opened.append(conn)
        return conn

    yield open_
    for conn in opened:
        conn.close()


def raw_rows(dbname: str, query: str) -> list[tuple[Any, ...]]:
    """The same query straight to PostgreSQL: what the data path must mask, or pass as is."""
    import psycopg

    with psycopg.connect(shop_source.dsn(dbname)) as conn:
        return conn.execute(query).fetchall()
