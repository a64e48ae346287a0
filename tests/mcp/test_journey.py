"""The agent's journey through veil-mcp, every part real: the MCP SDK's client drives the
`veil-mcp` command (a subprocess, over stdio, then over streamable HTTP) against the shop source
database in PostgreSQL and the live Veil. The agent (support-agent, owned by alice) lists the
tables, reads emails masked, is refused a probe by the inference guard, asks for access; Veil
posts the request to Slack (the fake Slack on loopback, through slack-sdk), bob approves it with
a signed click, the agent's next query shows the emails, and once the grant has expired, with no
worker running, its next query is masked again. Every query is an agent's access event naming
the tool call and the statement's fingerprint, never the SQL's values. Over HTTP the client sends
the server's bearer token; one without it, or with another, is answered 401 and runs nothing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import anyio
import pytest

from tests.datapath.conftest import raw_rows
from tests.mcp.conftest import AGENT, db
from tests.slack.conftest import (  # noqa: F401 - fixtures
    APPROVALS,
    SIGNING_SECRET,
    _no_broker,
    after_ack,
    click,
    deliver_outbox,
    fake_slack,
    post_interaction,
)

pytestmark = [db, pytest.mark.timeout(180)]

EMAILS = "SELECT id, email FROM customers ORDER BY id"
PROBE = "SELECT id FROM customers WHERE email LIKE 'customer1%'"
REASON = "Ticket 42: the customer's email bounces"
HTTP_TOKEN = "mcp-http-token-0123456789abcdef"


@pytest.fixture
def slack(settings: Any, fake_slack: Any, live_veil: Any) -> Any:  # noqa: F811
    """Slack on, against the fake, for the demo company's people (bob approves shop's PII).

    Veil lets clients cache no answer (`DECISION_TTL_S` 0) and re-reads policy and grant changes
    on every decision: the server runs in another process, whose clock the test cannot move, so
    an unmask answer it cached could outlive the expiry the test travels past."""
    from masking.selectors import decision_caches

    settings.SLACK_BOT_TOKEN = fake_slack.token
    settings.SLACK_ENABLED = True
    settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
    settings.SLACK_TEAM_ID, settings.SLACK_APP_ID = "T0ACME", "A0VEIL"
    settings.SLACK_API_URL = fake_slack.url
    settings.SLACK_API_TIMEOUT_S = 1
    settings.SLACK_RATE_LIMIT_MAX_WAIT_S = 1
    settings.SLACK_APPROVAL_CHANNEL = APPROVALS
    settings.SLACK_WEB_CONFIRM_LEVEL = 4
    settings.DECISION_TTL_S = 0
    settings.DECISION_EPOCH_MAX_AGE_MS = 0
    for username, slack_id in (("alice", "UALICE"), ("bob", "UBOB"), ("erin", "UERIN")):
        fake_slack.users[live_veil.people[username].email] = slack_id
    decision_caches.clear()
    return live_veil


def _command(settings: Any, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "veil_sdk.mcp.cli",
        "--service-account",
        AGENT,
        "--instance",
        "prod-pg",
        "--database",
        "shop",
        *extra,
    ]


def _environment(settings: Any, token: str) -> dict[str, str]:
    return {
        "VEIL_URL": settings.veil_url,
        "VEIL_TOKEN": token,
        "VEIL_MCP_DSN": settings.dsn,
        "PATH": "/usr/bin:/bin",
    }


async def _sync(function: Callable[..., Any], *args: Any) -> Any:
    """Run Django's (sync) side of a step in a worker thread, closing its database connection."""

    def run() -> Any:
        from django.db import connections

        try:
            return function(*args)
        finally:
            connections.close_all()

    return await anyio.to_thread.run_sync(run)


async def _text(client: Any, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
    result = await client.call_tool(tool, arguments)
    return bool(result.is_error), "\n".join(part.text for part in result.content)


class Journey:
    """The Django side of the journey: the request, Slack, the clock."""

    def __init__(self, people: Any, fake_slack: Any, after_ack: Any, client: Any, shop_db: str) -> None:  # noqa: F811
        self.people = people
        self.fake_slack = fake_slack
        self.after_ack = after_ack
        self.client = client
        self.raw = raw_rows(shop_db, EMAILS)
        self.request: Any = None
        self.message_ts = ""

    def shows_emails(self, text: str) -> bool:
        return all(email in text for _, email in self.raw)

    def shows_no_email(self, text: str) -> bool:
        return not any(email in text for _, email in self.raw)

    def announced_in_slack(self, request_id: int) -> str:
        """The outbox delivers the request to Slack; what the approvers' channel shows."""
        from jitaccess.models import AccessRequest

        self.request = AccessRequest.objects.get(pk=request_id)
        assert (self.request.service_account.name, self.request.requester.username) == (AGENT, "alice")
        assert self.request.state == "pending"
        deliver_outbox()
        [message] = [m for m in self.fake_slack.in_channel(APPROVALS) if f"request:{request_id}" in m.shown]
        assert message.has_buttons
        self.message_ts = message.ts
        return message.shown

    def bob_approves_in_slack(self) -> str:
        response, _, _ = post_interaction(
            self.client, click("approve", self.request.pk, user="UBOB", message_ts=self.message_ts)
        )
        assert response.status_code == 200
        self.after_ack.run()
        self.request.refresh_from_db()
        return str(self.request.state)

    def state(self) -> str:
        self.request.refresh_from_db()
        return str(self.request.state)


@pytest.fixture
def journey(slack: Any, fake_slack: Any, after_ack: Any, client: Any, shop_db: str) -> Journey:  # noqa: F811
    return Journey(slack.people, fake_slack, after_ack, client, shop_db)


async def _walk(mcp: Any, journey: Journey, *, list_tables: bool = True) -> list[str]:
    """The journey, step by step, over an open MCP client session; returns what it noted."""
    import time_machine

    if list_tables:
        error, text = await _text(mcp, "list_tables", {})
        assert not error, text
        customers = next(line for line in text.splitlines() if "public.customers" in line)
        assert "email (rule 'Email addresses anywhere')" in customers.split("masked for you:")[1]

    error, text = await _text(mcp, "query", {"sql": EMAILS, "max_rows": 20})
    assert not error and journey.shows_no_email(text), text
    assert "masked: email" in text

    error, text = await _text(mcp, "query", {"sql": PROBE})
    assert error and "refused by Veil's inference guard" in text and "email" in text

    arguments = {"table": "customers", "columns": ["email"], "reason": REASON, "duration_minutes": 30}
    error, text = await _text(mcp, "request_access", arguments)
    assert not error and "state pending" in text, text
    request_id = int(re.search(r"/requests/(\d+)/", text).group(1))

    shown = await _sync(journey.announced_in_slack, request_id)
    assert f"for agent `{AGENT}`" in shown and REASON in shown

    assert await _sync(journey.bob_approves_in_slack) == "approved"

    error, text = await _text(mcp, "query", {"sql": EMAILS, "max_rows": 20})
    assert not error and journey.shows_emails(text), text

    # The grant expires with no worker running: the decision path checks expires_at itself.
    traveller = time_machine.travel(journey.request.expires_at + timedelta(seconds=1), tick=True)
    traveller.start()
    try:
        error, text = await _text(mcp, "query", {"sql": EMAILS, "max_rows": 20})
        assert not error and journey.shows_no_email(text), text
        assert "masked: email" in text
        assert await _sync(journey.state) == "approved", "no worker ran: the grant's row still says approved"
    finally:
        traveller.stop()
    return [text]


def _agents_access_events(*, refused: int, queries: int) -> None:
    """The server's access events reached Veil (it flushes when the client hangs up): each one an
    agent's, naming the tool call and the statement's fingerprint, and the probe a refusal."""
    from veil_sdk.datapath.origin import statement_fingerprint

    from audit.models import AccessEvent, AuditEvent

    events = list(AccessEvent.objects.filter(principal=AGENT).order_by("id"))
    assert len(events) == queries + refused
    shape = {"tool": "query", "arguments": {"sql": "string", "max_rows": "integer"}}
    assert {(e.principal_type, e.service_account) for e in events} == {("agent", AGENT)}
    assert all(e.tool_call == shape for e in events)
    assert {e.fingerprint for e in events} == {statement_fingerprint(EMAILS), statement_fingerprint(PROBE)}
    masked_reads = [e for e in events if e.row_count and e.masked_columns]
    assert len(masked_reads) == 2, "before the approval and after the expiry"
    [probe] = AuditEvent.objects.filter(action="query.refused", actor_id=AGENT)
    assert probe.detail["tool_call"] == shape and probe.detail["principal_kind"] == "agent"
    assert "customer1" not in str(probe.detail["tool_call"]) + probe.detail["fingerprint"]


def test_over_stdio_the_agent_asks_bob_approves_in_slack_and_expiry_masks_again(
    settings_for: Callable[..., Any], agent_token: str, journey: Journey
) -> None:
    from mcp import Client, StdioServerParameters

    settings = settings_for()
    params = StdioServerParameters(
        command=sys.executable, args=_command(settings)[1:], env=_environment(settings, agent_token)
    )

    async def conversation() -> None:
        async with Client(params) as mcp:
            await _walk(mcp, journey)

    anyio.run(conversation)

    _agents_access_events(refused=1, queries=3)


class HttpServer:
    """`veil-mcp --transport streamable-http` in a subprocess, on a free loopback port."""

    def __init__(self, command: list[str], environment: dict[str, str], port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.process = subprocess.Popen(
            command,
            env={**environment, "PYTHONUNBUFFERED": "1"},
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stderr is not None
        self.log: list[str] = []
        for line in self.process.stderr:  # uvicorn says when it listens; a failure ends the stream
            self.log.append(line)
            if "Uvicorn running on" in line:
                # Keep reading its log, or a full pipe would block the server mid-request.
                threading.Thread(target=self.log.extend, args=(self.process.stderr,), daemon=True).start()
                return
        self.process.wait()
        pytest.fail("veil-mcp did not start: " + "".join(self.log))

    def stop(self) -> int:
        """SIGTERM, as a container runtime stops it; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            finally:
                if self.process.poll() is None:
                    os.kill(self.process.pid, signal.SIGKILL)
                    self.process.wait()
        return self.process.returncode


@pytest.fixture
def http_server(settings_for: Callable[..., Any], agent_token: str) -> Iterator[HttpServer]:
    from tests.sdk.conftest import free_port

    settings = settings_for()
    port = free_port()
    server = HttpServer(
        _command(settings, "--transport", "streamable-http", "--port", str(port)),
        {**_environment(settings, agent_token), "VEIL_MCP_HTTP_TOKEN": HTTP_TOKEN},
        port,
    )
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def _http_client(server: HttpServer, token: str | None = HTTP_TOKEN) -> AsyncIterator[Any]:
    """The SDK's client over streamable HTTP, sending `Authorization: Bearer <token>` (none: no header)."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300))
    async with http, Client(streamable_http_client(server.url, http_client=http)) as mcp:
        yield mcp


def test_over_streamable_http_the_same_journey(http_server: HttpServer, journey: Journey) -> None:
    async def conversation() -> None:
        async with _http_client(http_server) as mcp:
            await _walk(mcp, journey, list_tables=False)

    anyio.run(conversation)

    assert http_server.stop() == 0
    _agents_access_events(refused=1, queries=3)


@pytest.mark.parametrize(
    ("tool", "arguments", "why"),
    [
        ("query", {"sql": "DELETE FROM customers"}, "not DELETE"),
        ("query", {"sql": "SELECT 1; DROP TABLE customers"}, "exactly one statement per call (found 2)"),
        ("query", {"sql": "SELECT 1", "max_row": 3}, "Extra inputs are not permitted"),
        ("query", {"sql": "SELECT 1", "max_rows": 100_000}, "max_rows: between 1 and 200"),
        ("request_access", {"table": "customers", "columns": ["email"], "reason": " "}, "reason: say why"),
        ("describe_table", {"table": "customers", "as_user": "admin"}, "Extra inputs are not permitted"),
    ],
)
def test_over_streamable_http_bad_input_is_an_error_the_model_reads(
    http_server: HttpServer, shop_db: str, tool: str, arguments: dict[str, Any], why: str
) -> None:
    async def conversation() -> tuple[bool, str]:
        async with _http_client(http_server) as mcp:
            return await _text(mcp, tool, arguments)

    error, text = anyio.run(conversation)

    assert error and why in text, text
    assert raw_rows(shop_db, "SELECT count(*) FROM customers") == [(12,)]


def test_over_streamable_http_a_huge_result_answers_max_rows(http_server: HttpServer) -> None:
    async def conversation() -> tuple[bool, str]:
        async with _http_client(http_server) as mcp:
            return await _text(
                mcp, "query", {"sql": "SELECT g FROM generate_series(1, 5000000) g", "max_rows": 3}
            )

    error, text = anyio.run(conversation)

    assert not error and text.splitlines()[2:5] == ["| 1 |", "| 2 |", "| 3 |"]
    assert "first 3 rows shown (max_rows 3; the result has more)" in text


@pytest.mark.parametrize("token", [None, "not-the-token-0123456789abcdef"], ids=["no token", "wrong token"])
def test_over_streamable_http_a_client_without_the_token_gets_401_and_nothing_runs(
    http_server: HttpServer, token: str | None
) -> None:
    from mcp import MCPError

    from audit.models import AccessEvent

    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "query"}}
    call["params"]["arguments"] = {"sql": EMAILS}
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(http_server.url, json.dumps(call).encode(), headers)  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310 - loopback

    async def conversation() -> None:
        async with _http_client(http_server, token) as mcp:
            await mcp.call_tool("query", {"sql": EMAILS})

    with pytest.raises(ExceptionGroup) as client_failed:  # from the client's task group
        anyio.run(conversation)

    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"].startswith("Bearer ")
    assert client_failed.group_contains(MCPError, match="Server returned an error response"), client_failed
    assert http_server.stop() == 0  # flushes the access events of any query that ran: none did
    assert not AccessEvent.objects.filter(principal=AGENT).exists()


def test_streamable_http_off_loopback_refuses_to_start_without_a_token(
    settings_for: Callable[..., Any], agent_token: str
) -> None:
    from tests.sdk.conftest import free_port

    settings = settings_for()
    anywhere = "0.0.0.0"  # noqa: S104 - never listened on: that is the point
    command = _command(
        settings, "--transport", "streamable-http", "--host", anywhere, "--port", str(free_port())
    )
    started = subprocess.run(
        command, env=_environment(settings, agent_token), capture_output=True, text=True, timeout=60
    )

    assert started.returncode != 0
    assert "set VEIL_MCP_HTTP_TOKEN (or VEIL_MCP_HTTP_TOKEN_FILE) to listen on 0.0.0.0" in started.stderr
