"""Fixtures for veil-mcp: the shop source database and the live Veil of the data path's tests,
and an agent: the service account `support-agent`, owned by alice, with a token for decisions,
access events and requests. Tools are called through the official MCP SDK's client, in process
(`Client(server)`) or over stdio (the `veil-mcp` command in a subprocess)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from tests.datapath import shop_source
from tests.datapath.conftest import LiveVeil, live_veil, shop_db  # noqa: F401 - fixtures
from tests.sdk.conftest import veil_url  # noqa: F401 - the live Veil these tests ask

db = pytest.mark.django_db(transaction=True)
AGENT = "support-agent"


@pytest.fixture
def agent_token(live_veil: LiveVeil) -> str:  # noqa: F811
    from identity.models import Scope, User
    from tests.factories import make_token

    account, token = make_token([Scope.DECISIONS, Scope.ACCESS_EVENTS, Scope.REQUESTS], account_name=AGENT)
    account.owner = User.objects.get(username="alice")
    account.save(update_fields=["owner"])
    return token


@pytest.fixture
def settings_for(live_veil: LiveVeil, shop_db: str, agent_token: str) -> Callable[..., Any]:  # noqa: F811
    from veil_sdk.mcp import Settings

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "veil_url": live_veil.url,
            "token": agent_token,
            "service_account": AGENT,
            "dsn": shop_source.dsn(shop_db),
            "instance": "prod-pg",
            "database": "shop",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def clock() -> Any:
    from tests.datapath.test_adapter import FakeClock

    return FakeClock()


@pytest.fixture
def mcp_server(settings_for: Callable[..., Any], live_veil: LiveVeil, clock: Any) -> Any:  # noqa: F811
    """The server, its Veil client on a clock the test moves (closed by `live_veil`)."""
    from veil_sdk import VeilClient
    from veil_sdk.mcp.server import Agent, build_server

    settings = settings_for()
    client = VeilClient(settings.veil_url, settings.token, timeout=2.0, mask_ttl=0, clock=clock)
    live_veil.clients.append(client)
    return build_server(settings, agent=Agent(settings, client=client))


def call(server: Any, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
    """One tool call through a fresh MCP client session: (is_error, the answer's text)."""
    from mcp import Client

    async def conversation() -> tuple[bool, str]:
        async with Client(server) as client:
            result = await client.call_tool(tool, arguments)
            return bool(result.is_error), "\n".join(part.text for part in result.content)

    return anyio.run(conversation)
