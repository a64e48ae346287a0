"""Where a query came from, as its access event tells Veil: the statement's fingerprint (its parse
tree hashed without literals) and, for an agent's query, the tool call that ran it (the tool and
its arguments' JSON types, never their values). Through the psycopg adapter, the real API and the
live Veil."""

from __future__ import annotations

import psycopg
import pytest

from tests.datapath import shop_source
from tests.datapath.conftest import db

pytestmark = db

PROBE = "SELECT id FROM customers WHERE email LIKE 'customer1%'"


def test_an_access_event_carries_the_statements_fingerprint_shared_by_other_literals(connect_as, live_veil):
    from veil_sdk.datapath.origin import statement_fingerprint

    from audit.models import AccessEvent

    client = live_veil.client()
    conn = connect_as("bob", client=client)
    conn.execute("SELECT id, email FROM customers WHERE id = 3").fetchall()
    conn.execute("select id,email from customers where id=5").fetchall()
    assert client.flush(timeout=10)

    events = list(
        AccessEvent.objects.order_by("id").values_list("principal_type", "fingerprint", "tool_call")
    )
    fingerprint = statement_fingerprint("SELECT id, email FROM customers WHERE id = 3")
    assert len(fingerprint) == 16
    assert events == [("user", fingerprint, {}), ("user", fingerprint, {})]
    assert statement_fingerprint("SELECT id FROM customers WHERE id = 3") != fingerprint


def test_an_agents_queries_carry_its_tool_call_and_a_refusal_says_so_in_the_log(live_veil, shop_db):
    from veil_sdk import psycopg as veil_psycopg
    from veil_sdk import service_account
    from veil_sdk.datapath.origin import statement_fingerprint, tool_call

    from audit.models import AccessEvent, AuditEvent

    client = live_veil.client()
    arguments = {"sql": "SELECT id, email FROM customers", "max_rows": 5}
    with (
        tool_call("query", arguments),
        veil_psycopg.connect(
            shop_source.dsn(shop_db),
            client=client,
            principal=service_account("support-agent"),
            instance="prod-pg",
            database="shop",
            autocommit=True,
        ) as conn,
    ):
        conn.execute(arguments["sql"]).fetchmany(5)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(PROBE)
    with veil_psycopg.connect(  # a job's query, outside any tool call
        shop_source.dsn(shop_db),
        client=client,
        principal=service_account("nightly-export"),
        instance="prod-pg",
        database="shop",
        autocommit=True,
    ) as job:
        job.execute("SELECT id FROM customers").fetchall()
    assert client.flush(timeout=10)

    shape = {"tool": "query", "arguments": {"sql": "string", "max_rows": "integer"}}
    events = list(
        AccessEvent.objects.order_by("id").values_list(
            "principal", "principal_type", "tool_call", "fingerprint"
        )
    )
    assert events == [
        ("support-agent", "agent", shape, statement_fingerprint(arguments["sql"])),
        ("support-agent", "agent", shape, statement_fingerprint(PROBE)),
        ("nightly-export", "service_account", {}, statement_fingerprint("SELECT id FROM customers")),
    ]
    refused = AuditEvent.objects.get(action="query.refused")
    assert refused.detail["principal_kind"] == "agent"
    assert refused.detail["tool_call"] == shape
    assert refused.detail["fingerprint"] == statement_fingerprint(PROBE)
    assert "customer1" not in str(refused.detail["tool_call"]) + refused.detail["fingerprint"]


def test_a_statement_postgresql_cannot_parse_has_no_fingerprint(connect_as, live_veil):
    from audit.models import AccessEvent

    client = live_veil.client()
    with pytest.raises(psycopg.errors.SyntaxError):
        connect_as("bob", client=client).execute("SELEC id FROM customers")
    assert client.flush(timeout=10)

    assert AccessEvent.objects.get().fingerprint == ""


def test_a_tool_call_veil_would_refuse_fails_at_once_not_in_the_event():
    from veil_sdk.datapath.origin import tool_call

    with pytest.raises(ValueError, match=r"tool_call\.tool"), tool_call("two words", {}):
        pass


@pytest.mark.parametrize(
    ("extra", "refused_because"),
    [
        ({"fingerprint": "SELECT 1"}, "fingerprint"),
        ({"tool_call": {"tool": "query", "arguments": {"sql": "SELECT email FROM customers"}}}, "tool_call"),
        ({"tool_call": {"tool": "run query", "arguments": {}}}, "tool_call.tool"),
    ],
)
def test_the_client_refuses_a_value_where_a_shape_belongs_before_it_is_queued(extra, refused_because, caplog):
    from veil_sdk import VeilClient, service_account

    client = VeilClient("http://127.0.0.1:9", "veil_x_y")
    try:
        queued = client.report(service_account("support-agent"), "q-1", [], [], 0, **extra)
    finally:
        client.close(timeout=1)

    assert queued is False and client.stats.events_rejected == 1 and client.stats.events_queued == 0
    assert refused_because in caplog.text and "customers" not in caplog.text, "no argument's value logged"
