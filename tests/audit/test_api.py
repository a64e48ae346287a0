"""`GET /api/v1/audit/events`: the audit log for SIEMs, read with a real `audit:read` token or a
person's session, against the real PostgreSQL chain."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from django.core.management import call_command
from django.urls import reverse

from audit.apis import AUDIT_READ_SCOPE, DEFAULT_LIMIT, MAX_LIMIT, AuditEventOut
from audit.chain import EVENT_FIELDS
from audit.models import ActorType, AuditEvent, Channel
from audit.services import SYSTEM, Actor, Target, record_event
from identity.models import Scope
from tests.audit.conftest import CAROL, ERIN, raw_sql
from tests.factories import make_token

pytestmark = pytest.mark.django_db

URL = "/api/v1/audit/events"
HASHED = (
    "seq",
    "occurred_at",
    "actor_type",
    "actor_id",
    "actor_name",
    "action",
    "target_type",
    "target_id",
    "target_repr",
    "project",
    "channel",
    "detail",
)


def consumer_verifies(events: list[dict], prev: str | None = None) -> list[int]:
    """What a SIEM does with the API's output alone (no Veil code): recompute each hash, and check
    each event links to the one before. Returns the seqs that fail."""
    broken = []
    for event in events:
        body = {name: event[name] for name in HASHED}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        recomputed = hashlib.sha256((event["prev_hash"] + canonical).encode()).hexdigest()
        if recomputed != event["hash"] or (prev is not None and event["prev_hash"] != prev):
            broken.append(event["seq"])
        prev = event["hash"]
    return broken


@pytest.fixture
def log(people):
    """Events in two projects and of no project, with details that test the canonical form."""
    record_event(
        action="request.created",
        actor=CAROL,
        channel=Channel.WEB,
        target=Target("request", "1", "REQ-1 shop/public.customers (email)"),
        project="shop",
        detail={"reason": "Ticket — café Zoë ✓", "scope": "public.customers (email)", "n": 1.5},
    )
    record_event(
        action="grant.created",
        actor=SYSTEM,
        channel=Channel.SYSTEM,
        target=Target("grant", "9"),
        project="analytics",
        detail={"request": "REQ-2", "nested": {"b": [1, 2], "a": None}},
    )
    record_event(
        action="rule.created",
        actor=ERIN,
        channel=Channel.API,
        target=Target("rule", "3", "Mask emails"),
        detail={"after": {"title": "Mask emails"}},
    )
    record_event(action="auth.sign_in", actor=ERIN, channel=Channel.WEB)
    record_event(
        action="request.approved",
        actor=Actor(ActorType.USER, "local:2", "Bob Approver"),
        channel=Channel.SLACK,
        target=Target("request", "1"),
        project="shop",
    )
    return list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))


def all_seqs() -> list[int]:
    return list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))


@pytest.fixture
def reader(api_client, db):
    """A client with an `audit:read` token, made before `log` (making a token is itself an event)."""
    return as_token(api_client)


def as_token(api_client, scopes=(AUDIT_READ_SCOPE,)):
    _, plaintext = make_token(list(scopes))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return api_client


def read_all(client, **query) -> list[dict]:
    """Poll from the start, a page at a time, as a SIEM does."""
    events, after = [], 0
    while True:
        response = client.get(URL, {**query, "after_seq": after})
        assert response.status_code == 200, response.content
        body = response.json()
        events += body["events"]
        after = body["next_after_seq"]
        if not body["has_more"]:
            return events


def error(response) -> dict:
    assert response.headers["Content-Type"] == "application/json"
    return response.json()["error"]


def test_the_scope_is_the_one_identity_defines():
    assert AUDIT_READ_SCOPE == Scope.AUDIT_READ


def test_a_token_pages_through_everything_in_chain_order(reader, log):
    client = reader
    log = all_seqs()

    first = client.get(URL, {"limit": 2})
    body = first.json()
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "no-store"
    assert [e["seq"] for e in body["events"]] == log[:2]
    assert body["has_more"] is True
    assert body["next_after_seq"] == log[1]

    every = [e["seq"] for e in read_all(client, limit=2)]
    assert every == log == sorted(log)
    assert len(every) == len(set(every))

    # Polling at the head: nothing new, the cursor stays; a new event then arrives after it.
    end = client.get(URL, {"after_seq": log[-1]}).json()
    assert end == {"events": [], "next_after_seq": log[-1], "has_more": False}
    new = record_event(action="auth.sign_out", actor=ERIN, channel=Channel.WEB)
    polled = client.get(URL, {"after_seq": log[-1]}).json()
    assert [e["seq"] for e in polled["events"]] == [new.seq]
    assert polled["next_after_seq"] == new.seq


def test_an_event_carries_every_field_and_its_label(reader, log):
    body = reader.get(URL, {"action": "request.created"}).json()

    (event,) = body["events"]
    stored = AuditEvent.objects.get(seq=event["seq"])
    assert set(event) == {*EVENT_FIELDS, "action_label"} == set(AuditEventOut().fields)
    assert event["action_label"] == "Access requested"
    assert event["actor_id"] == "local:3" and event["actor_name"] == "Carol Support"
    assert event["channel"] == "web" and event["project"] == "shop"
    assert event["target_repr"] == "REQ-1 shop/public.customers (email)"
    assert event["detail"]["reason"] == "Ticket — café Zoë ✓"
    assert event["occurred_at"].endswith("+00:00")
    assert (event["prev_hash"], event["hash"]) == (stored.prev_hash, stored.hash)


def test_a_consumer_verifies_the_chain_from_the_output_alone(reader, log):
    client = reader
    events = read_all(client, limit=2)

    assert events[0]["prev_hash"] == "0" * 64
    assert consumer_verifies(events) == []

    # The same check catches an event edited behind Veil's back.
    raw_sql(f"UPDATE audit_auditevent SET actor_name = 'Someone else' WHERE seq = {log[2]}")
    assert consumer_verifies(read_all(client)) == [log[2]]


def test_default_and_maximum_limit(api_client, people):
    for _ in range(DEFAULT_LIMIT + 1):
        record_event(action="auth.sign_in", actor=ERIN, channel=Channel.WEB)
    client = as_token(api_client)

    body = client.get(URL).json()
    assert len(body["events"]) == DEFAULT_LIMIT and body["has_more"] is True
    assert client.get(URL, {"limit": MAX_LIMIT}).json()["has_more"] is False


def test_filters_are_those_of_the_event_search(api_client, log):
    client = as_token(api_client)

    def seqs(**query):
        response = client.get(URL, query)
        assert response.status_code == 200, response.content
        return [e["action"] for e in response.json()["events"]]

    assert seqs(project="shop") == ["request.created", "request.approved"]
    assert seqs(action="request") == ["request.created", "request.approved"]
    assert seqs(person="local:5") == ["rule.created", "auth.sign_in"]
    assert seqs(person="Carol") == ["request.created"]
    assert seqs(column="customers") == ["request.created"]
    assert seqs(action="request.approved", after_seq=log[0]) == ["request.approved"]
    assert seqs(**{"from": "2000-01-01", "to": "2000-01-02"}) == []
    # An event type Veil records but the log does not hold yet: a poller may wait for it.
    assert seqs(action="breakglass.reviewed") == []


def test_a_moment_with_any_offset_iso_8601_allows_is_read(api_client, log):
    """ISO 8601 allows offsets up to ±23:59, PostgreSQL's timestamps ±15:59: the filter compares
    in UTC rather than answer a 500."""
    client = as_token(api_client)

    for moment in ("2546-12-09T17:42:35.845333+20:54", "2000-01-01T00:00:00-23:59"):
        response = client.get(URL, {"from": moment})
        assert response.status_code == 200, response.content
        assert client.get(URL, {"to": moment}).status_code == 200


def test_a_person_reads_the_projects_they_audit(client, log, people):
    client.force_login(people["dave"])  # audits shop only

    events = read_all(client)
    assert [(e["project"], e["action"]) for e in events] == [
        ("shop", "request.created"),
        ("", "rule.created"),  # global policy applies to every project
        ("shop", "request.approved"),
    ]
    # Each event still verifies on its own; the links skip what the scope hides.
    assert all(consumer_verifies([e]) == [] for e in events)

    refused = client.get(URL, {"project": "analytics"})
    assert refused.status_code == 400
    assert error(refused)["fields"].keys() == {"project"}
    assert "no project 'analytics' in your scope" in error(refused)["message"]

    client.force_login(people["staff"])
    assert [e["seq"] for e in read_all(client)] == all_seqs()


def test_a_person_who_may_not_audit_is_refused(client, log, people):
    client.force_login(people["alice"])  # may unmask in shop, not audit it

    response = client.get(URL)
    assert response.status_code == 403
    assert "may not read the audit log" in error(response)["message"]


def test_credentials_are_required(api_client, log):
    response = api_client.get(URL)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert error(response)["code"] == "not_authenticated"

    api_client.credentials(HTTP_AUTHORIZATION="Bearer veil_nothing_here")
    assert api_client.get(URL).status_code == 401


def test_a_token_without_the_scope_is_refused_with_the_reason(api_client, log):
    client = as_token(api_client, scopes=[Scope.DECISIONS, Scope.POLICY_WRITE])

    response = client.get(URL)
    assert response.status_code == 403
    assert error(response)["message"] == (
        "This token lacks the scope 'audit:read', which reading the audit log needs."
    )


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({"after_seq": "abc"}, "after_seq", "valid integer"),
        ({"after_seq": "-1"}, "after_seq", "greater than or equal to 0"),
        ({"after_seq": "9" * 20}, "after_seq", "less than or equal to"),
        ({"limit": "0"}, "limit", "greater than or equal to 1"),
        ({"limit": str(MAX_LIMIT + 1)}, "limit", f"less than or equal to {MAX_LIMIT}"),
        ({"person": "a\x00b"}, "person", "Null characters"),
        ({"column": "a\x1bb"}, "column", "control character"),
        ({"from": "yesterday"}, "from", "is not a date"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "from", "'from' must be on or before 'to'"),
        ({"action": "request.deny"}, "action", "did you mean 'request.denied'?"),
        ({"project": "nowhere"}, "project", "no project 'nowhere'"),
        ({"actor": "local:3"}, "actor", "Unknown field"),
        ({"before": "3"}, "before", "Unknown field"),
    ],
)
def test_bad_parameters_are_400s_naming_the_field(api_client, log, query, field, words):
    response = as_token(api_client).get(URL, query)

    assert response.status_code == 400
    problem = error(response)
    assert problem["code"] == "invalid"
    assert field in problem["fields"]
    assert problem["message"].startswith(f"{field}: ")
    assert words in problem["message"]


def test_a_parameter_given_twice_is_refused(api_client, log):
    response = as_token(api_client).get(f"{URL}?limit=1&limit=500")

    assert response.status_code == 400
    assert error(response)["fields"] == {"limit": ["Given more than once; give it once."]}


def test_a_project_without_events_yet_may_be_polled(api_client, log):
    from tests.factories import make_project

    make_project("payments")

    response = as_token(api_client).get(URL, {"project": "payments"})
    assert response.status_code == 200
    assert response.json()["events"] == []


def test_reading_the_log_does_not_write_to_it(reader, client, log, people):
    client.force_login(people["dave"])  # signing in is recorded; reading is not
    before = all_seqs()

    assert reader.get(URL).status_code == 200
    assert client.get(URL).status_code == 200
    assert all_seqs() == before


def test_the_route_and_its_parameters_are_in_the_schema(tmp_path):
    assert reverse("audit-events") == URL
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    operation = yaml.safe_load(out.read_text())["paths"][URL]["get"]

    params = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert set(params) == {
        "after_seq",
        "limit",
        "from",
        "to",
        "person",
        "role",
        "project",
        "instance",
        "database",
        "column",
        "action",
    }
    assert params["limit"]["default"] == DEFAULT_LIMIT and params["limit"]["maximum"] == MAX_LIMIT
    assert set(operation["responses"]) == {"200", "400", "401", "403"}
