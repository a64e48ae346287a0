"""The SDK client against a real Veil (pytest-django's live server) and loopback servers that
misbehave on purpose. Nothing of Veil is mocked: decisions and access events go over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from veil_sdk import (
    DEGRADED,
    FULL_ALGORITHM,
    Column,
    ColumnDecision,
    Principal,
    VeilClient,
    service_account,
    user,
)
from veil_sdk.algorithms import compile

from tests.sdk.conftest import LoopbackServer, Responder, Veil, forward_to, policy_changed

EXAMPLE = Path(__file__).resolve().parents[2] / "sdk" / "examples" / "mask_query.py"
DECISIONS = "/api/v1/decisions"
EVENTS = "/api/v1/access-events"

ID = Column("prod-pg", "shop", "public", "customers", "id")
EMAIL = Column("prod-pg", "shop", "public", "customers", "email")
PHONE = Column("prod-pg", "shop", "public", "customers", "phone")
ALICE = user("alice@example.com")
ROWS = [
    {"id": 1, "email": "alice@example.com", "phone": "+33 6 12 34 56 78"},
    {"id": 2, "email": "bob@example.org", "phone": None},
]

db = pytest.mark.django_db(transaction=True)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def answer(status: int, body: Any, content_type: str = "application/json") -> Responder:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda path, headers, request_body: (status, {"Content-Type": content_type}, raw)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def assert_all_degraded(decisions: list[ColumnDecision], columns: list[Column]) -> None:
    assert [d.column for d in decisions] == columns
    for decision in decisions:
        assert (decision.action, decision.reason_kind, decision.ttl_s) == ("mask", DEGRADED, 0)
        assert decision.algorithm == {"type": "full", "substitution": "******"}
        assert decision.apply("alice@example.com") == "******"
        assert decision.apply(None) == "******"


# --- Decisions from the real server ------------------------------------------------------------


@db
def test_decide_masks_the_email_with_its_algorithm_and_mask_rows_applies_it(veil: Veil, clients) -> None:
    client = clients(veil.url, veil.token)

    decisions = client.decide(ALICE, [ID, EMAIL, PHONE], query_id="q-1")

    by_column = {d.column.column: d for d in decisions}
    assert [d.column for d in decisions] == [ID, EMAIL, PHONE]
    email = by_column["email"]
    assert (email.action, email.masked, email.semantic_type) == ("mask", True, "email")
    assert email.algorithm == {"type": "email"}
    assert email.reason_kind == "semantic_type"
    assert email.ttl_s > 0
    assert (by_column["id"].action, by_column["id"].reason_kind) == ("unmask", "not_sensitive")
    assert by_column["id"].masker is None

    assert client.mask_rows(ROWS, decisions) == [
        {"id": 1, "email": "a****@example.com", "phone": "+33 6 12 34 56 78"},
        {"id": 2, "email": "b****@example.org", "phone": None},
    ]
    as_tuples = [(r["id"], r["email"], r["phone"]) for r in ROWS]
    assert client.mask_rows(as_tuples, decisions) == [
        (1, "a****@example.com", "+33 6 12 34 56 78"),
        (2, "b****@example.org", None),
    ]
    assert client.mask_row(ROWS[0], decisions)["email"] == "a****@example.com"


@db
def test_cached_answers_are_reused_and_only_missing_columns_are_asked(
    veil: Veil, relay: LoopbackServer, clients
) -> None:
    client = clients(relay.url, veil.token)

    first = client.decide(ALICE, [EMAIL, ID])
    again = client.decide(user("ALICE@example.com"), [EMAIL, ID])  # another principal: own entries
    second = client.decide(ALICE, [ID, EMAIL])
    third = client.decide(ALICE, [EMAIL, PHONE, PHONE])

    assert second == [first[1], first[0]]
    assert [d.reason_kind for d in again] == ["semantic_type", "not_sensitive"]
    assert [d.column for d in third] == [EMAIL, PHONE, PHONE]
    asked = [r["columns"] for r in relay.requests]
    assert asked == [
        [EMAIL.as_json(), ID.as_json()],
        [EMAIL.as_json(), ID.as_json()],
        [PHONE.as_json()],  # the duplicate is asked once
    ]
    assert (client.stats.decision_requests, client.stats.cache_hits, client.stats.cache_misses) == (3, 3, 6)


@db
def test_an_answer_is_reused_until_its_ttl_and_never_past_it(
    veil: Veil, relay: LoopbackServer, clients
) -> None:
    clock = FakeClock()
    client = clients(relay.url, veil.token, clock=clock)
    (decision,) = client.decide(ALICE, [EMAIL])
    ttl = decision.ttl_s

    clock.now += ttl - 0.001
    client.decide(ALICE, [EMAIL])
    assert relay.count(DECISIONS) == 1

    clock.now += 0.001
    client.decide(ALICE, [EMAIL])
    assert relay.count(DECISIONS) == 2
    assert client.stats.cache_hits == 1


@db
def test_a_grant_unmasks_with_its_expiry_and_bounds_the_ttl(veil: Veil, clients) -> None:
    from django.utils import timezone

    from masking.models import Exemption, ExemptionKind

    expires = timezone.now() + timedelta(seconds=5)
    Exemption.objects.create(
        kind=ExemptionKind.GRANT,
        project=veil.project,
        condition='resource.column_name == "email"',
        reason="support ticket",
        principal_key=f"user:{veil.alice.pk}",
        expires_at=expires,
        request_ref="REQ-7",
    )
    policy_changed()
    client = clients(veil.url, veil.token)

    (decision,) = client.decide(ALICE, [EMAIL], query_id="q-grant")

    assert (decision.action, decision.reason_kind, decision.reason["request"]) == ("unmask", "grant", "REQ-7")
    assert decision.expires_at is not None
    assert abs((decision.expires_at - expires).total_seconds()) < 0.01
    assert decision.ttl_s <= 5
    assert client.mask_row(ROWS[0], [decision]) == {
        "id": "******",  # no decision for these keys: masked in full
        "email": "alice@example.com",
        "phone": "******",
    }


@db
def test_a_pseudonym_needs_its_key_here_or_the_column_is_masked_in_full(veil: Veil, clients) -> None:
    from masking.models import SemanticType

    SemanticType.objects.filter(key="email").update(algorithm={"type": "pseudonym", "key_id": "k1"})
    policy_changed()
    without_key = clients(veil.url, veil.token)
    with_key = clients(veil.url, veil.token, keys={"k1": b"secret"})

    (fallback,) = without_key.decide(ALICE, [EMAIL])
    (keyed,) = with_key.decide(ALICE, [EMAIL])

    assert fallback.algorithm == FULL_ALGORITHM
    assert fallback.apply("alice@example.com") == "******"
    assert without_key.stats.compile_failures == 1
    token = keyed.apply("alice@example.com")
    assert keyed.algorithm == {"type": "pseudonym", "key_id": "k1"}
    expected = compile({"type": "pseudonym", "key_id": "k1"}, keys={"k1": b"secret"})
    assert token == expected("alice@example.com")


@db
def test_large_queries_are_asked_in_batches(veil: Veil, relay: LoopbackServer, clients) -> None:
    client = clients(relay.url, veil.token, max_columns_per_request=2)

    decisions = client.decide(ALICE, [ID, EMAIL, PHONE])

    assert [d.reason_kind for d in decisions] == ["not_sensitive", "semantic_type", "not_sensitive"]
    assert [len(r["columns"]) for r in relay.requests] == [2, 1]


@db
def test_an_unknown_principal_is_masked_by_veil_itself(veil: Veil, clients) -> None:
    client = clients(veil.url, veil.token)

    decisions = client.decide(service_account("nobody"), [ID, EMAIL])

    assert [(d.action, d.reason_kind) for d in decisions] == [("mask", "unknown_principal")] * 2


@db
def test_a_column_veil_would_refuse_is_masked_alone_and_the_others_are_still_asked(
    veil: Veil, relay: LoopbackServer, clients, caplog
) -> None:
    client = clients(relay.url, veil.token)
    unnamed = Column("prod-pg", "shop", "public", "customers", "")
    too_long = Column("prod-pg", "shop", "public", "customers", "c" * 129)

    decisions = client.decide(ALICE, [unnamed, EMAIL, too_long, ID])
    client.decide(ALICE, [unnamed])

    assert [(d.action, d.reason_kind) for d in decisions] == [
        ("mask", DEGRADED),
        ("mask", "semantic_type"),
        ("mask", DEGRADED),
        ("unmask", "not_sensitive"),
    ]
    assert decisions[0].apply("secret") == "******"
    assert [[c["column"] for c in r["columns"]] for r in relay.requests] == [["email", "id"]]
    assert client.stats.degraded_columns == 3
    assert client.stats.decision_failures == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "veil_sdk"]
    assert len([w for w in warnings if "the column name must be 1 to 128 characters" in w]) == 2


def test_decide_refuses_an_invalid_query_id_as_report_does(closed_url: str, clients) -> None:
    client = clients(closed_url)

    with pytest.raises(ValueError, match="query_id"):
        client.decide(ALICE, [EMAIL], query_id="q" * 201)
    with pytest.raises(ValueError, match="query_id"):
        client.decide(ALICE, [EMAIL], query_id=None)  # type: ignore[arg-type]
    assert client.stats.decision_requests == 0


@db
def test_a_request_veil_refuses_is_logged_as_refused_not_as_an_outage(
    veil: Veil, closed_url: str, clients, caplog
) -> None:
    from identity.models import Scope
    from tests.factories import make_token

    _, events_only = make_token([Scope.ACCESS_EVENTS], account_name="reporter")
    refused = clients(veil.url, events_only).decide(ALICE, [EMAIL])
    unreachable = clients(closed_url).decide(ALICE, [EMAIL])
    # base_url with a path too many: Veil's API says it has no such path
    misdirected = clients(veil.url + "/api/v1", veil.token, timeout=10).decide(ALICE, [EMAIL])
    # base_url pointing outside the API: not an answer from Veil's API at all
    elsewhere = clients(veil.url + "/somewhere", veil.token, timeout=10).decide(ALICE, [EMAIL])

    assert {d[0].reason_kind for d in (refused, unreachable, misdirected, elsewhere)} == {DEGRADED}
    warnings = [r.getMessage() for r in caplog.records if r.name == "veil_sdk"]
    assert any(
        w.startswith("Veil refused the decision request (HTTP 403: This token lacks") for w in warnings
    )
    assert any(w.startswith("Veil decisions unavailable (URLError") for w in warnings)
    assert any(
        w.startswith("Veil refused the decision request (HTTP 404: No API operation at /api/v1/api/v1/")
        and "Is base_url right?" in w
        for w in warnings
    )
    assert any(
        w.startswith("Veil decisions unavailable (HTTP 404: not an answer from Veil's API")
        and "is base_url right?" in w
        for w in warnings
    )


# --- Failing closed -----------------------------------------------------------------------------


def test_an_unreachable_veil_masks_every_column_at_once_and_is_not_cached(closed_url: str, clients) -> None:
    client = clients(closed_url)
    columns = [ID, EMAIL, PHONE]

    started = time.monotonic()
    decisions = client.decide(ALICE, columns)
    elapsed = time.monotonic() - started
    client.decide(ALICE, columns)

    assert_all_degraded(decisions, columns)
    assert elapsed < 0.5
    assert client.mask_rows(ROWS[:1], decisions) == [{"id": "******", "email": "******", "phone": "******"}]
    assert (client.stats.decision_requests, client.stats.decision_failures) == (2, 2)
    assert (client.stats.cache_hits, client.stats.degraded_columns) == (0, 6)


def test_a_veil_that_does_not_answer_costs_the_timeout_not_more(silent_url: str, clients) -> None:
    client = clients(silent_url, timeout=0.2, max_columns_per_request=1)

    started = time.monotonic()
    decisions = client.decide(ALICE, [ID, EMAIL])
    elapsed = time.monotonic() - started

    assert_all_degraded(decisions, [ID, EMAIL])
    assert 0.2 <= elapsed < 1.0  # the second batch is not attempted after the first timed out
    assert client.stats.decision_requests == 1


def _valid(decisions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"policy_version": 1, "decisions": decisions}


MASK = {"action": "mask", "semantic_type": None, "algorithm": {"type": "email"}, "reason": {"kind": "rule"}}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(500, {"error": {"message": "boom"}}, id="server-error"),
        pytest.param(503, b"<html>Bad gateway</html>", id="html-error"),
        pytest.param(401, {"error": {"status": 401, "code": "not_authenticated"}}, id="unauthenticated"),
        pytest.param(200, b"not json at all", id="garbage"),
        pytest.param(200, [1, 2], id="not-an-object"),
        pytest.param(200, _valid([{**MASK, "ttl_s": 10}]), id="too-few-decisions"),
        pytest.param(200, _valid([{**MASK, "ttl_s": 10}] * 3), id="too-many-decisions"),
        pytest.param(200, _valid([{**MASK, "ttl_s": 10, "action": "maybe"}] * 2), id="unknown-action"),
        pytest.param(200, _valid([{**MASK, "ttl_s": "10"}] * 2), id="ttl-not-an-integer"),
        pytest.param(200, _valid([{**MASK, "ttl_s": 10, "reason": {}}] * 2), id="no-reason-kind"),
        pytest.param(
            200, _valid([{**MASK, "ttl_s": 10, "algorithm": "email"}] * 2), id="algorithm-not-object"
        ),
        pytest.param(
            200,
            _valid([{**MASK, "ttl_s": 10, "reason": {"kind": "grant", "expires_at": "soon"}}] * 2),
            id="bad-expiry",
        ),
    ],
)
def test_a_veil_answering_nonsense_masks_every_column_and_is_not_cached(
    status: int, body: Any, loopback, clients
) -> None:
    server = loopback(answer(status, body))
    client = clients(server.url)

    decisions = client.decide(ALICE, [ID, EMAIL])
    client.decide(ALICE, [ID, EMAIL])

    assert_all_degraded(decisions, [ID, EMAIL])
    assert server.count(DECISIONS) == 2
    assert client.stats.decision_failures == 2


@db
def test_a_redirect_is_not_followed_so_the_token_goes_nowhere_else(veil: Veil, loopback, clients) -> None:
    target = loopback(forward_to(veil.url))
    redirect = loopback(lambda path, headers, body: (307, {"Location": target.url + path}, b""))
    client = clients(redirect.url, veil.token)

    decisions = client.decide(ALICE, [EMAIL])

    assert_all_degraded(decisions, [EMAIL])
    assert target.requests == []


def test_an_answer_with_ttl_zero_is_not_cached(loopback, clients) -> None:
    server = loopback(answer(200, _valid([{**MASK, "ttl_s": 0}])))
    client = clients(server.url)

    first = client.decide(ALICE, [EMAIL])
    client.decide(ALICE, [EMAIL])

    assert first[0].apply("alice@example.com") == "a****@example.com"
    assert server.count(DECISIONS) == 2


def test_a_degraded_answer_from_veil_is_applied_but_not_cached(loopback, clients) -> None:
    decision = {"action": "mask", "semantic_type": None, "algorithm": dict(FULL_ALGORITHM), "ttl_s": 0}
    decision["reason"] = {"kind": DEGRADED}
    body = {"policy_version": None, "degraded": True, "decisions": [decision]}
    server = loopback(answer(200, body))
    client = clients(server.url)

    first = client.decide(ALICE, [EMAIL])
    client.decide(ALICE, [EMAIL])

    assert_all_degraded(first, [EMAIL])
    assert server.count(DECISIONS) == 2
    assert (client.stats.decision_failures, client.stats.degraded_columns) == (0, 2)


def test_a_mask_without_algorithm_is_a_full_mask(loopback, clients) -> None:
    server = loopback(answer(200, _valid([{**MASK, "algorithm": None, "ttl_s": 10}])))
    client = clients(server.url)

    (decision,) = client.decide(ALICE, [EMAIL])

    assert (decision.algorithm, decision.reason_kind) == (FULL_ALGORITHM, "rule")
    assert decision.apply("x") == "******"


def test_decide_sends_the_principal_and_asserted_groups(loopback, clients) -> None:
    server = loopback(answer(200, _valid([{**MASK, "ttl_s": 10}])))
    client = clients(server.url)

    client.decide(user("alice@example.com", groups=["sre", "analysts", "sre"]), [EMAIL], query_id="q-9")
    client.decide({"service_account": "etl"}, [("prod-pg", "shop", "public", "customers", "email")])

    assert server.requests[0]["principal"] == {"user": "alice@example.com", "groups": ["analysts", "sre"]}
    assert server.requests[0]["query_id"] == "q-9"
    assert server.requests[1]["principal"] == {"service_account": "etl"}
    assert server.requests[1]["columns"] == [EMAIL.as_json()]


# --- Access events ------------------------------------------------------------------------------


@db
def test_report_and_flush_store_an_access_event(veil: Veil, clients) -> None:
    from audit.models import AccessEvent

    client = clients(veil.url, veil.token)
    when = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)

    assert client.report(ALICE, "q-42", [ID, PHONE], [EMAIL], 2, occurred_at=when) is True
    assert client.flush(timeout=5)

    event = AccessEvent.objects.get()
    assert (event.service_account, event.principal_type, event.principal) == (
        "sql-proxy",
        "user",
        "alice@example.com",
    )
    assert (event.query_id, event.row_count, event.occurred_at) == ("q-42", 2, when)
    assert event.unmasked_columns == [ID_LABEL, PHONE_LABEL]
    assert event.masked_columns == [EMAIL_LABEL]
    assert client.stats.events_sent == 1


ID_LABEL = "prod-pg/shop/public.customers.id"
EMAIL_LABEL = "prod-pg/shop/public.customers.email"
PHONE_LABEL = "prod-pg/shop/public.customers.phone"


@db
def test_report_decisions_splits_the_columns_by_their_treatment(veil: Veil, clients) -> None:
    from audit.models import AccessEvent

    with VeilClient(veil.url, veil.token) as client:
        decisions = client.decide(service_account("sql-proxy"), [ID, EMAIL])
        client.report_decisions(service_account("sql-proxy"), "q-sa", decisions, row_count=7)

    event = AccessEvent.objects.get()  # close() delivered it
    assert (event.principal_type, event.principal) == ("service_account", "sql-proxy")
    assert (event.unmasked_columns, event.masked_columns, event.row_count) == ([ID_LABEL], [EMAIL_LABEL], 7)


@db
def test_reporting_while_veil_is_down_neither_raises_nor_blocks_and_delivers_once_it_is_back(
    veil: Veil, relay: LoopbackServer, clients
) -> None:
    from audit.models import AccessEvent

    relay.stop()
    client = clients(relay.url, veil.token, flush_interval=0.05)

    started = time.monotonic()
    for number in range(3):
        assert client.report(ALICE, f"q-{number}", [], [EMAIL], number)
    assert time.monotonic() - started < 0.1
    assert not client.flush(timeout=0.3)
    assert client.stats.event_post_failures >= 1
    assert client.stats.events_sent == 0

    relay.start()
    assert client.flush(timeout=5)

    assert sorted(AccessEvent.objects.values_list("query_id", flat=True)) == ["q-0", "q-1", "q-2"]
    assert (client.stats.events_sent, client.stats.events_dropped) == (3, 0)


@db
def test_events_are_delivered_in_the_background_without_flush(
    veil: Veil, relay: LoopbackServer, clients
) -> None:
    from audit.models import AccessEvent

    client = clients(relay.url, veil.token, flush_interval=0.05)
    client.report(ALICE, "q-bg", [], [EMAIL], 1)

    assert wait_for(lambda: client.stats.events_sent == 1)
    assert AccessEvent.objects.filter(query_id="q-bg").exists()


@db
def test_a_full_queue_drops_the_oldest_events(veil: Veil, relay: LoopbackServer, clients) -> None:
    from audit.models import AccessEvent

    relay.stop()
    client = clients(relay.url, veil.token, event_queue_max=2)
    for number in range(3):
        client.report(ALICE, f"q-{number}", [], [EMAIL], 1)
    relay.start()

    assert client.flush(timeout=5)

    assert sorted(AccessEvent.objects.values_list("query_id", flat=True)) == ["q-1", "q-2"]
    assert (client.stats.events_dropped, client.stats.events_sent) == (1, 2)


@db
def test_events_veil_refuses_are_dropped_alone_and_the_others_delivered(
    veil: Veil, relay: LoopbackServer, clients
) -> None:
    from audit.models import AccessEvent

    client = clients(relay.url, veil.token)
    client.report(ALICE, "good-1", [], [EMAIL], 1)
    client.report(service_account("not a slug!"), "bad", [], [EMAIL], 1)  # only the server checks
    client.report(ALICE, "good-2", [], [EMAIL], 1)

    assert client.flush(timeout=5)

    assert sorted(AccessEvent.objects.values_list("query_id", flat=True)) == ["good-1", "good-2"]
    assert (client.stats.events_sent, client.stats.events_rejected) == (2, 1)


def test_an_invalid_report_is_refused_without_raising(closed_url: str, clients) -> None:
    client = clients(closed_url)

    assert client.report(ALICE, "q", [], [EMAIL], -1) is False
    assert client.report(ALICE, "q" * 201, [], [EMAIL], 1) is False
    assert client.report("alice", "q", [], [EMAIL], 1) is False  # type: ignore[arg-type]
    assert client.report(ALICE, "q", [("too", "short")], [], 1) is False
    assert client.report(ALICE, "q", [], [EMAIL], 2**63) is False  # more than Veil can store

    assert client.stats.events_rejected == 5
    assert client.stats.events_queued == 0
    assert client.flush(timeout=0.1)


def test_close_gives_up_after_its_timeout_and_later_reports_are_dropped(closed_url: str) -> None:
    client = VeilClient(closed_url, "veil_test_secret")
    client.report(ALICE, "q", [], [EMAIL], 1)

    started = time.monotonic()
    assert client.close(timeout=0.3) is False
    assert time.monotonic() - started < 1.0
    # Counted by close(), or by the sender if a post was in flight when close() gave up.
    assert wait_for(lambda: client.stats.events_dropped == 1)

    assert client.report(ALICE, "q", [], [EMAIL], 1) is False
    assert client.stats.events_dropped == 2
    assert client.close() is True  # idempotent


# --- Masking rows and principals, without a server ----------------------------------------------


def _decision(column: Column, algorithm: dict[str, Any] | None) -> ColumnDecision:
    action = "unmask" if algorithm is None else "mask"
    masker = None if algorithm is None else compile(algorithm)
    return ColumnDecision(column, action, algorithm, {"kind": "rule"}, None, None, 10, masker)


def test_rows_by_name_mask_in_full_what_no_decision_covers(clients, closed_url: str) -> None:
    client = clients(closed_url)
    orders_email = Column("prod-pg", "shop", "public", "orders", "email")
    decisions = [_decision(ID, None), _decision(EMAIL, {"type": "email"}), _decision(orders_email, None)]

    row = {"id": 1, "email": "alice@example.com", "extra": "secret"}
    masked = client.mask_row(row, decisions)

    # customers.email is masked and orders.email is not: by name they conflict, so fail closed.
    assert masked == {"id": 1, "email": "******", "extra": "******"}
    assert row["email"] == "alice@example.com"  # the input is not modified
    assert client.mask_row((1, "alice@example.com", "x@y.z", "extra"), decisions) == (
        1,
        "a****@example.com",
        "x@y.z",
        "******",
    )
    assert client.mask_row((1,), decisions) == (1,)
    with pytest.raises(TypeError):
        client.mask_row("1,alice@example.com", decisions)


def test_principals_are_normalised_for_the_cache() -> None:
    assert user("a@x.io", groups=["b", "a", "b"]) == user("a@x.io", groups=("a", "b"))
    assert user("a@x.io") != user("a@x.io", groups=[])
    assert Principal.from_json({"user": "a@x.io", "groups": ["g"]}) == user("a@x.io", ["g"])
    assert service_account("etl").as_json() == {"service_account": "etl"}
    with pytest.raises(ValueError, match="groups"):
        Principal("service_account", "etl", ("g",))
    with pytest.raises(ValueError, match="exactly one"):
        Principal.from_json({"user": "a", "service_account": "b"})


# --- The example --------------------------------------------------------------------------------


@db
def test_the_example_runs_against_veil(veil: Veil) -> None:
    from audit.models import AccessEvent

    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--url", veil.url],
        env={**os.environ, "VEIL_TOKEN": veil.token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert all(line == line.rstrip() for line in result.stdout.splitlines())
    assert "a****@example.com" in result.stdout
    assert "alice@example.com" not in result.stdout.split("Masked rows")[1]
    assert AccessEvent.objects.get().masked_columns == [EMAIL_LABEL]


@db
def test_the_example_runs_without_the_sdk_installed_and_aligns_its_columns(veil: Veil) -> None:
    """`python sdk/examples/mask_query.py` with a Python that lacks veil_sdk (here: no site
    packages at all) uses the checkout's SDK; the columns line up whatever the reason's length."""
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(EXAMPLE), "--url", veil.url, "--user", "nobody@example.com"],
        env={**os.environ, "VEIL_TOKEN": veil.token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert "ModuleNotFoundError" not in result.stderr, result.stderr
    lines = result.stdout.split("Masked rows")[0].splitlines()[1:]
    assert len(lines) == 3 and all("unknown_principal" in line for line in lines), result.stdout
    assert len({line.index("with {") for line in lines}) == 1, result.stdout
    assert "'email': '******'" in result.stdout.split("Masked rows")[1]
