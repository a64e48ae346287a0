"""Insights, people and agents side by side: probes the inference guard stopped, reads answered
masked and access requests, per principal and per kind. The data path's reports reach Veil
through the real access-events API (the agent's with its tool call, as veil-mcp sends them)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from identity.models import Scope, ServiceAccount
from jitaccess.models import AccessRequest
from jitaccess.policy.activity import principal_activity, totals_by_kind
from jitaccess.states import State
from masking.models import Database
from tests.factories import grant_project_perm, make_project, make_token, make_user

pytestmark = pytest.mark.django_db

TOOL_CALL = {"tool": "query", "arguments": {"sql": "string", "max_rows": "integer"}}
GUARD = {"outcome": "refused", "clause": "WHERE", "message": "email is masked for you"}


def _column(name: str) -> dict[str, str]:
    return {
        "instance": "prod-pg",
        "database": "shop",
        "schema": "public",
        "table": "customers",
        "column": name,
    }


def _event(principal: dict[str, str], *, rows: int, masked: bool = True, **extra) -> dict:
    return {
        "principal": principal,
        "occurred_at": timezone.now().isoformat(),
        "unmasked_columns": [_column("id")],
        "masked_columns": [_column("email")] if masked else [],
        "row_count": rows,
        **extra,
    }


def _request(requester, state: str, agent: ServiceAccount | None = None) -> AccessRequest:
    database = Database.objects.get(instance__key="prod-pg")
    return AccessRequest.objects.create(
        project_id=database.project_id,
        requester=requester,
        service_account=agent,
        database=database,
        schema_name="public",
        table_name="customers",
        column_names=["email"],
        duration=timedelta(hours=1),
        reason="ticket",
        state=state,
        pending_until=timezone.now() + timedelta(days=1),
    )


@pytest.fixture
def activity(policy_world, api_client):
    """bob probes once through the SQL proxy; the support agent (alice's) probes twice and reads
    emails masked once through veil-mcp, and its request is denied; the nightly job reads masked
    once; alice's own request is approved; a read in clear counts for nobody."""
    alice, bob = make_user("alice"), make_user("bob")
    agent = ServiceAccount.objects.create(name="support-agent", owner=alice)
    agent_call = {"tool_call": TOOL_CALL, "fingerprint": "6d80dcdfdc71c6f8"}
    reports = {
        "sql-proxy": [
            _event({"user": bob.email}, rows=0, guard=GUARD),
            _event({"user": bob.email}, rows=4, masked=False),
        ],
        "support-agent": [
            _event({"service_account": "support-agent"}, rows=0, guard=GUARD, **agent_call),
            _event({"service_account": "support-agent"}, rows=0, guard=GUARD, **agent_call),
            _event({"service_account": "support-agent"}, rows=5, **agent_call),
        ],
        "etl-runner": [_event({"service_account": "nightly-export"}, rows=9)],
    }
    for account, events in reports.items():
        _, token = make_token([Scope.ACCESS_EVENTS], account_name=account)
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        response = api_client.post("/api/v1/access-events", {"events": events}, format="json")
        assert response.status_code == 202, response.content
    api_client.credentials()
    _request(alice, State.DENIED, agent=agent)
    _request(alice, State.APPROVED)
    return policy_world


def _since():
    return timezone.now() - timedelta(days=28)


def test_each_principal_with_its_probes_masked_reads_and_requests_agents_next_to_people(activity):
    rows = [
        (r.principal, r.kind, r.probes, r.masked_reads, r.requests, r.approved, r.denied, r.pending)
        for r in principal_activity(_since())
    ]

    assert rows == [
        ("support-agent", "agent", 2, 1, 1, 0, 1, 0),
        ("bob", "person", 1, 0, 0, 0, 0, 0),  # named by username, though the proxy names bob by email
        ("nightly-export", "service account", 0, 1, 0, 0, 0, 0),
        ("alice", "person", 0, 0, 1, 1, 0, 0),  # her agent's request is the agent's, not hers
    ]


def test_totals_compare_people_with_agents(activity):
    totals = [
        (t.label, t.principals, t.probes, t.masked_reads, t.requests, t.denied)
        for t in totals_by_kind(principal_activity(_since()))
    ]

    assert totals == [
        ("People", 2, 1, 0, 1, 0),
        ("Agents", 1, 2, 1, 1, 1),
        ("Service accounts", 1, 0, 1, 0, 0),
    ]


def test_an_administrator_of_another_project_sees_none_of_it(activity):
    make_project("billing")

    assert principal_activity(_since(), projects={"billing"}) == []
    assert [r.principal for r in principal_activity(_since(), projects={"shop"})] == [
        "support-agent",
        "bob",
        "nightly-export",
        "alice",
    ]


def test_the_insights_page_shows_people_and_agents(client, activity):
    outsider = make_user("olga")
    grant_project_perm(outsider, "administer_policy", make_project("billing"))

    client.force_login(activity.polly)
    page = client.get(reverse("policy:insights")).content.decode()
    client.force_login(outsider)
    theirs = client.get(reverse("policy:insights")).content.decode()

    assert "People and agents, last 28 days" in page
    assert "<td>support-agent</td><td>agent</td><td>2</td><td>1</td><td>1</td><td>0 / 1 / 0</td>" in page
    assert '<th scope="row">Agents</th><td>1</td><td>2</td>' in page
    assert "support-agent" not in theirs and "No probes, masked reads or requests." in theirs


def test_attempts_count_an_agents_denied_request_and_probes_as_the_agents(activity):
    from jitaccess.policy.insights import attempts

    totals = {series.principal: series.total for series in attempts(_since())}

    assert totals == {"support-agent": 3, "bob": 1}, "alice's own request was approved"
