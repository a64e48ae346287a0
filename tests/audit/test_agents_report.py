"""What did agents read: the access events an agent's queries produced (reported through the real
API with the tool call and the statement's fingerprint, which make the principal an agent), per
agent with its owner, on the report page, in CSV, and scoped by project for readers of some
projects only."""

from __future__ import annotations

import csv
import json
import re

import pytest
from django.urls import reverse

from audit.filters import EVERYTHING, AuditFilter, AuditScope
from audit.models import AccessEvent, Channel
from audit.reports import agent_rows
from audit.services import SYSTEM
from identity.models import Scope, ServiceAccount
from identity.services import service_account_create, token_create
from tests.factories import catalog_payload, make_project, make_user

pytestmark = pytest.mark.django_db


def _column(column: str, instance: str = "prod-pg") -> dict[str, str]:
    return {
        "instance": instance,
        "database": "shop",
        "schema": "public",
        "table": "customers",
        "column": column,
    }


TOOL_CALL = {"tool": "query", "arguments": {"sql": "string", "max_rows": "integer"}}


@pytest.fixture
def agent_world(api_client, shop):
    """The support agent (a service account Olive owns) reports two queries of its own through its
    token; the SQL proxy reports one of a person's. prod-pg/shop is the shop's, other-pg/hr HR's."""
    from masking.services.catalog import catalog_upsert

    make_project("hr")
    for instance, database, project in (("prod-pg", "shop", "shop"), ("other-pg", "hr", "hr")):
        payload = catalog_payload(instance=instance, project=project)
        payload["databases"][0]["name"] = database
        catalog_upsert(
            instance_spec=payload["instance"],
            databases=payload["databases"],
            prune=False,
            actor=SYSTEM,
            channel=Channel.CLI,
        )
    olive = make_user("olive", display_name="Olive Owner")
    olive.is_superuser = True
    olive.save(update_fields=["is_superuser"])
    api_client.force_login(olive)  # so Olive's subject has a name in the log (the sign-in event)
    agent = service_account_create(
        name="support-agent", description="MCP agent", owner=olive, created_by=olive, channel=Channel.WEB
    )
    _, agent_token = token_create(
        service_account=agent, name="mcp", scopes=[Scope.ACCESS_EVENTS], created_by=olive, channel=Channel.WEB
    )
    proxy = service_account_create(
        name="sql-proxy", description="", owner=None, created_by=None, channel="cli"
    )
    _, proxy_token = token_create(
        service_account=proxy, name="p", scopes=[Scope.ACCESS_EVENTS], created_by=None, channel=Channel.CLI
    )
    agent_events = [
        {
            "principal": {"service_account": "support-agent"},
            "query_id": "mcp-1",
            "occurred_at": "2026-03-01T10:00:00Z",
            "unmasked_columns": [_column("id")],
            "masked_columns": [_column("email")],
            "row_count": 12,
            "fingerprint": "6d80dcdfdc71c6f8",
            "tool_call": TOOL_CALL,
        },
        {
            "principal": {"service_account": "support-agent"},
            "query_id": "mcp-2",
            "occurred_at": "2026-03-01T10:05:00Z",
            "masked_columns": [{**_column("email", "other-pg"), "database": "hr"}],
            "row_count": 3,
        },
    ]
    person_event = {
        **{key: value for key, value in agent_events[0].items() if key != "tool_call"},
        "principal": {"user": "alice@example.com"},
        "query_id": "q-alice",
    }
    for token, events in ((agent_token, agent_events), (proxy_token, [person_event])):
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        assert api_client.post("/api/v1/access-events", {"events": events}, format="json").status_code == 202
    api_client.credentials()
    return olive


def test_access_events_carry_the_principal_kind(agent_world):
    kinds = dict(AccessEvent.objects.values_list("query_id", "principal_type"))

    assert kinds == {"mcp-1": "agent", "mcp-2": "service_account", "q-alice": "user"}


def test_the_report_lists_each_agent_query_with_its_owner_columns_and_rows(agent_world):
    rows = list(agent_rows(AuditFilter(), EVERYTHING))

    assert [row[1:] for row in rows] == [
        (
            "support-agent",
            "agent",
            f"Olive Owner ({agent_world.canonical_subject})",
            "support-agent",
            "mcp-1",
            TOOL_CALL,
            "6d80dcdfdc71c6f8",
            ["prod-pg/shop/public.customers.id"],
            ["prod-pg/shop/public.customers.email"],
            12,
        ),
        (
            "support-agent",
            "service_account",
            rows[0][3],
            "support-agent",
            "mcp-2",
            None,
            "",
            [],
            ["other-pg/hr/public.customers.email"],
            3,
        ),
    ], "a person's query is not an agent's"


def test_a_reader_of_one_project_sees_only_the_queries_within_it(agent_world):
    shop_only = list(agent_rows(AuditFilter(), AuditScope(projects=frozenset({"shop"}))))
    filtered = list(agent_rows(AuditFilter(project="hr"), EVERYTHING))

    assert [row[5] for row in shop_only] == ["mcp-1"]
    assert [row[5] for row in filtered] == ["mcp-2"]


def test_the_report_page_and_the_csv_export_show_it(client, agent_world, tmp_path):
    from audit.exports import write_export

    client.force_login(agent_world)
    page = client.get(reverse("audit:report", args=["agents"]))
    result = write_export(
        report="agents",
        fmt="csv",
        flt=AuditFilter(),
        scope=EVERYTHING,
        out_path=tmp_path / "agents.csv",
        actor=SYSTEM,
        channel=Channel.CLI,
    )

    text = page.content.decode()
    assert page.status_code == 200 and "What did agents read" in text
    assert "support-agent" in text and "Olive Owner" in text and "mcp-1" in text
    assert "Agent (MCP)" in text and "query(sql: string, max_rows: integer)" in text
    assert "6d80dcdfdc71c6f8" in text
    with open(tmp_path / "agents.csv", newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines[0][:8] == [
        "occurred_at",
        "agent",
        "principal_kind",
        "owner",
        "reported_by",
        "query_id",
        "tool_call",
        "fingerprint",
    ]
    assert [line[5] for line in lines[1:]] == ["mcp-1", "mcp-2"]
    assert [json.loads(line[6]) if line[6] else None for line in lines[1:]] == [TOOL_CALL, None]
    assert result is not None


def _refused_probe(agent_world, api_client) -> None:
    """The inference guard refused one of the agent's queries (reported as the data path does)."""
    agent = ServiceAccount.objects.get(name="support-agent")
    _, token = token_create(
        service_account=agent,
        name="guard",
        scopes=[Scope.ACCESS_EVENTS],
        created_by=agent_world,
        channel="web",
    )
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    refused = {
        "principal": {"service_account": "support-agent"},
        "query_id": "mcp-3",
        "occurred_at": "2026-03-01T10:10:00Z",
        "masked_columns": [_column("email")],
        "row_count": 0,
        "fingerprint": "0bb991a7406ad1b5",
        "tool_call": TOOL_CALL,
        "guard": {"outcome": "refused", "clause": "WHERE", "message": "email is masked for you"},
    }
    assert api_client.post("/api/v1/access-events", {"events": [refused]}, format="json").status_code == 202
    api_client.credentials()


def test_the_pdf_sums_each_agent_then_lists_its_queries(agent_world, api_client, tmp_path):
    from django.core.management import call_command

    from tests.audit.test_exports import _pdf_pages_and_text

    _refused_probe(agent_world, api_client)
    out = tmp_path / "agents.pdf"

    call_command("audit", "export", "--format", "pdf", "--report", "agents", "--out", str(out))

    manifest = json.loads((tmp_path / "agents.pdf.manifest.json").read_text())
    assert manifest["report"] == "agents" and manifest["pages"] >= 1
    _, stream = _pdf_pages_and_text(out.read_bytes())
    # The text drawn, in order, a wrapped cell's lines joined by a space.
    text = " ".join(re.findall(r"\((.*?)\) Tj", stream)).replace("\\(", "(").replace("\\)", ")")
    for shown in (
        "What did agents read",
        "INTACT",
        "support-agent",
        "Olive Owner",
        "Agent (MCP)",
        "query(sql: string, max_rows: integer)",
        "6d80dcdfdc71c6f8",
        "prod-pg/shop/public.customers.email",
    ):
        assert shown in text, shown
    assert "alice@example.com" not in text, "a person's query is not an agent's"
    per_agent = text[text.index("Per agent") : text.index("When (UTC)")]
    assert "Olive Owner (local:" in per_agent
    assert ") 3 15 1 prod-pg/shop/public.customers.id" in per_agent, "3 queries, 15 rows, 1 refused"


def test_the_agents_report_page_offers_its_own_pdf_and_the_web_export_makes_it(client, agent_world):
    from audit.models import ExportJob

    client.force_login(agent_world)
    page = client.get(reverse("audit:report", args=["agents"])).content.decode()
    assert 'value="pdf" class="button">PDF</button>' in page
    events_page = client.get(reverse("audit:events")).content.decode()
    assert "PDF summary" in events_page, "elsewhere a PDF is the summary"

    client.post(reverse("audit:exports"), {"report": "agents", "format": "pdf"})
    client.post(reverse("audit:exports"), {"report": "events", "format": "pdf"})

    assert list(ExportJob.objects.order_by("id").values_list("report", "format")) == [
        ("agents", "pdf"),
        ("summary", "pdf"),
    ]
