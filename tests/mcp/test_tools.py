"""veil-mcp's tools driven by the official MCP SDK's client, against the shop source database and
the live Veil: what an agent (the service account support-agent, owned by alice) lists, reads,
is refused, asks for and is granted, and that nothing clear or secret leaks on the way."""

from __future__ import annotations

import re
import sys
from datetime import timedelta

import anyio
import pytest

from tests.datapath.conftest import raw_rows
from tests.mcp.conftest import AGENT, call, db

pytestmark = db

EMAILS = "SELECT id, email FROM customers ORDER BY id"


def test_list_tables_says_what_is_masked_for_the_agent_and_why(mcp_server, agent_token):
    error, text = call(mcp_server, "list_tables", {})
    assert not error
    customers = next(line for line in text.splitlines() if "public.customers" in line)
    assert "in clear: id, created_at" in customers
    assert "email (rule 'Email addresses anywhere')" in customers
    assert agent_token not in text


def test_describe_table_gives_each_column_and_an_unknown_table_is_an_error(mcp_server):
    error, text = call(mcp_server, "describe_table", {"table": "payments"})
    assert not error
    assert "| card_number | text | yes | masked | rule 'Card numbers' |" in text
    error, text = call(mcp_server, "describe_table", {"table": "nope"})
    assert error and "no table or view public.nope" in text


def test_a_query_answers_a_table_with_masked_columns_named(mcp_server, shop_db):
    error, text = call(mcp_server, "query", {"sql": EMAILS, "max_rows": 3})
    assert not error
    raw = raw_rows(shop_db, EMAILS)[:3]
    lines = text.splitlines()
    assert lines[0] == "| id | email |"
    for (row_id, email), line in zip(raw, lines[2:5], strict=True):
        assert line.startswith(f"| {row_id} | ") and email not in line
    assert "first 3 rows shown" in text and "masked: email (rule 'Email addresses anywhere')" in text


def test_each_query_is_an_agents_access_event_naming_the_tool_call_not_its_values(mcp_server, live_veil):
    from veil_sdk.datapath.origin import statement_fingerprint

    from audit.models import AccessEvent

    call(mcp_server, "query", {"sql": EMAILS, "max_rows": 3})
    assert live_veil.clients[-1].flush(timeout=10)  # the agent's client (mcp_server's)

    event = AccessEvent.objects.get()
    assert (event.principal, event.principal_type, event.service_account) == (AGENT, "agent", AGENT)
    assert event.tool_call == {"tool": "query", "arguments": {"sql": "string", "max_rows": "integer"}}
    assert event.fingerprint == statement_fingerprint(EMAILS)
    assert event.masked_columns == ["prod-pg/shop/public.customers.email"]
    assert event.unmasked_columns == ["prod-pg/shop/public.customers.id"]


def test_a_huge_result_is_cut_at_max_rows_without_being_fetched_whole(mcp_server):
    error, text = call(
        mcp_server, "query", {"sql": "SELECT g FROM generate_series(1, 5000000) g", "max_rows": 5}
    )
    assert not error
    assert text.splitlines()[2:7] == [f"| {n} |" for n in range(1, 6)]
    assert "first 5 rows shown (max_rows 5; the result has more)" in text
    error, text = call(mcp_server, "query", {"sql": "SELECT 1", "max_rows": 100_000})
    assert error and "max_rows: between 1 and 200" in text


def test_the_guard_refuses_a_probe_of_a_masked_column(mcp_server):
    error, text = call(mcp_server, "query", {"sql": "SELECT id FROM customers WHERE email LIKE 'a%'"})
    assert error and "refused by Veil's inference guard" in text and "email" in text


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("DELETE FROM customers", "not DELETE"),
        ("UPDATE customers SET email = 'x'", "not UPDATE"),
        ("SELECT 1; DELETE FROM customers", "exactly one statement per call (found 2)"),
        ("WITH gone AS (DELETE FROM customers RETURNING id) SELECT * FROM gone", "not DELETE"),
        ("EXPLAIN ANALYZE DELETE FROM customers", "EXPLAIN ANALYZE runs the statement"),
        ("SELECT * INTO stolen FROM customers", "SELECT INTO creates a table"),
        ("SELECT * FROM customers FOR UPDATE", "FOR UPDATE/SHARE"),
        ("SELEC 1", "syntax error"),
    ],
)
def test_only_one_read_only_statement_runs(mcp_server, shop_db, sql, why):
    error, text = call(mcp_server, "query", {"sql": sql})
    assert error and why in text
    assert raw_rows(shop_db, "SELECT count(*) FROM customers WHERE email <> 'x'") == [(12,)]


def test_a_function_that_writes_is_stopped_by_the_read_only_transaction(mcp_server):
    error, text = call(mcp_server, "query", {"sql": "SELECT nextval('customers_id_seq')"})
    assert error and "SQLSTATE" in text


def test_a_data_error_does_not_quote_the_value(mcp_server):
    error, text = call(mcp_server, "query", {"sql": "SELECT 'customer1@example.net'::int"})
    assert error and "SQLSTATE 22P02" in text and "customer1@example.net" not in text


def test_unknown_arguments_are_refused_not_ignored(mcp_server):
    error, text = call(mcp_server, "query", {"sql": "SELECT 1", "max_row": 3})
    assert error and "max_row" in text and "Extra inputs are not permitted" in text


def test_veil_unreachable_masks_never_clear(settings_for, shop_db):
    """Without Veil's answers every column is masked in full (reason degraded), so a query answers
    masked rows, a query that orders or filters by any column is refused by the guard, the table
    list says so, and no request can be filed."""
    from veil_sdk.mcp import build_server

    from tests.sdk.conftest import free_port

    server = build_server(settings_for(veil_url=f"http://127.0.0.1:{free_port()}"))
    error, text = call(server, "query", {"sql": "SELECT id, email FROM customers", "max_rows": 12})
    assert not error, text
    rows = text.splitlines()[2:14]
    assert len(rows) == 12 and len(set(rows)) == 1, "every row the same: every value masked"
    for row_id, email in raw_rows(shop_db, EMAILS):
        assert email not in text and f"| {row_id} |" not in text
    assert "masked: id (degraded); email (degraded)" in text

    error, text = call(server, "query", {"sql": EMAILS})
    assert error and "refused by Veil's inference guard" in text

    error, text = call(server, "list_tables", {})
    customers = next(line for line in text.splitlines() if "public.customers" in line)
    assert "in clear" not in customers and "id (degraded)" in customers

    error, text = call(server, "request_access", {"table": "customers", "columns": ["email"], "reason": "x"})
    assert error and "Veil could not be reached: no request was filed" in text


def test_request_access_then_approval_then_expiry(mcp_server, live_veil, shop_db, clock, agent_token):
    import time_machine
    from django.utils import timezone

    from jitaccess.models import AccessRequest
    from jitaccess.services import requests as services
    from masking.selectors import decision_caches

    error, text = call(
        mcp_server,
        "request_access",
        {
            "table": "customers",
            "columns": ["email"],
            "reason": "Ticket 42: the customer's email bounces",
            "duration_minutes": 30,
        },
    )
    assert not error, text
    request_id = int(re.search(r"/requests/(\d+)/", text).group(1))
    assert "state pending" in text and agent_token not in text
    request = AccessRequest.objects.get(pk=request_id)
    assert request.service_account.name == AGENT and request.requester.username == "alice"

    for approver in ("bob", "erin"):
        request.refresh_from_db()
        if request.state == "pending":
            services.request_approve(
                request_id=request_id, approver=live_veil.people[approver], channel="web"
            )
    request.refresh_from_db()
    assert request.state == "approved", request.state
    decision_caches.clear()

    raw = raw_rows(shop_db, EMAILS)
    error, text = call(mcp_server, "query", {"sql": EMAILS, "max_rows": 12})
    assert not error and all(email in text for _, email in raw)

    with time_machine.travel(request.expires_at + timedelta(seconds=1), tick=True):
        assert timezone.now() > request.expires_at
        clock.now += 3600  # the unmask answer was valid until the expiry at the latest
        error, text = call(mcp_server, "query", {"sql": EMAILS, "max_rows": 12})
        assert not error and not any(email in text for _, email in raw)


def test_stdio_server_answers_a_real_client(settings_for, agent_token, shop_db):
    from mcp import Client, StdioServerParameters

    settings = settings_for()
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "veil_sdk.mcp.cli",
            "--service-account",
            AGENT,
            "--instance",
            "prod-pg",
            "--database",
            "shop",
        ],
        env={
            "VEIL_URL": settings.veil_url,
            "VEIL_TOKEN": agent_token,
            "VEIL_MCP_DSN": settings.dsn,
            "PATH": "/usr/bin:/bin",
        },
    )

    async def conversation() -> tuple[list[str], str]:
        async with Client(params) as client:
            tools = sorted(tool.name for tool in (await client.list_tools()).tools)
            result = await client.call_tool("query", {"sql": EMAILS, "max_rows": 2})
            return tools, "\n".join(part.text for part in result.content)

    tools, text = anyio.run(conversation)
    assert tools == ["describe_table", "list_tables", "query", "request_access"]
    assert text.splitlines()[0] == "| id | email |" and "masked: email" in text
    assert all(email not in text for _, email in raw_rows(shop_db, EMAILS))
