"""Compliance reports, reconstructed from the log alone, and every filter they take."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from audit.filters import EVERYTHING, AuditFilter, AuditScope, events_matching
from audit.models import ActorType, Channel
from audit.reports import (
    REPORTS,
    breakglass_rows,
    denied_rows,
    in_force_rows,
    policy_rows,
    unmask_rows,
    unmask_summary,
)
from audit.reports.dashboard import dashboard
from audit.services import (
    ANONYMOUS,
    SYSTEM,
    Actor,
    Target,
    record_access_events,
    record_event,
    record_unmask_decisions,
)
from tests.audit.conftest import CAROL, ERIN, record_approved_request, record_grant

pytestmark = pytest.mark.django_db

ALICE = Actor(ActorType.USER, "local:1", "Alice Engineer")
BOB = Actor(ActorType.USER, "local:2", "Bob Lead")
EMAIL = "prod-pg/shop/public.customers.email"
PHONE = "prod-pg/shop/public.customers.phone"
EVENTS_COLUMN = "warehouse/analytics/public.events.ip"
JAN = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)
FEB = datetime(2026, 2, 16, 9, 0, tzinfo=UTC)


def _at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def _decision(person: str, pid: str, entries: list[dict], query_id: str) -> None:
    record_unmask_decisions(
        service_account="sql-proxy",
        principal_type="user",
        principal_id=pid,
        principal_name=person,
        query_id=query_id,
        policy_version=1,
        asserted_groups=[],
        unmasked=entries,
    )


@pytest.fixture
def log():
    """January: Alice's approved request in shop, a support exemption, Carol's grant in analytics.
    February: decisions, policy changes, break-glass, refusals."""
    with _at(JAN):
        record_event(
            action="exemption.created",
            actor=ERIN,
            channel=Channel.WEB,
            target=Target("exemption", "10", "Support reads emails for tickets"),
            project="shop",
            detail={
                "condition": 'resource.column_name == "email"',
                "expires_at": None,
                "members": {"users": [], "groups": [], "roles": ["support-agents"], "service_accounts": []},
            },
        )
        record_approved_request(5, ALICE, approver=BOB, reason="INC-4711 refund mismatch", minutes=30)
        record_grant(11, 5, "user:1", days=60, by=BOB)
        record_approved_request(
            6, CAROL, project="analytics", approver=BOB, reason="quarterly report", minutes=90
        )
        record_grant(
            21,
            6,
            "user:3",
            project="analytics",
            instance="warehouse",
            database="analytics",
            column="ip",
            days=60,
            by=BOB,
        )
    with _at(FEB):
        _decision(
            "Alice Engineer",
            "1",
            [{"column": EMAIL, "reason": "grant", "id": 11, "expires_at": None, "request": "REQ-5"}],
            "q-alice",
        )
        record_access_events(
            service_account="sql-proxy",
            events=[
                {
                    "occurred_at": FEB,
                    "principal_type": "user",
                    "principal": "alice",
                    "query_id": "q-alice",
                    "unmasked_columns": [EMAIL],
                    "masked_columns": [],
                    "row_count": 42,
                }
            ],
        )
        _decision(
            "Carol Support",
            "3",
            [{"column": EVENTS_COLUMN, "reason": "grant", "id": 21, "request": "REQ-6"}],
            "q-carol",
        )
        _decision("Dan Support", "4", [{"column": PHONE, "reason": "exemption", "id": 10}], "")
        record_event(
            action="rule.updated",
            actor=ERIN,
            channel=Channel.WEB,
            target=Target("masking_rule", "1", "emails"),
            detail={"before": {"condition": "false"}, "after": {"condition": "true"}},
        )
        record_event(
            action="catalog.classification_changed",
            actor=SYSTEM,
            channel=Channel.API,
            target=Target("column", "shop/public.customers.phone", "shop/public.customers.phone"),
            project="shop",
            detail={"before": None, "after": 3},
        )
        record_event(
            action="grant.revoked",
            actor=BOB,
            channel=Channel.WEB,
            target=Target("grant", "21", "REQ-6"),
            project="analytics",
            detail={"request": "REQ-6"},
        )
        for ref, who in ((7, ALICE), (8, CAROL)):
            record_event(
                action="breakglass.taken",
                actor=who,
                channel=Channel.WEB,
                target=Target("request", str(ref), f"REQ-{ref} shop"),
                project="shop",
                detail={"scope": "shop", "duration_s": 3600, "reason": f"incident {ref}"},
            )
        record_event(
            action="breakglass.reviewed",
            actor=ERIN,
            channel=Channel.WEB,
            target=Target("request", "8", "REQ-8 shop"),
            project="shop",
            detail={"notes": "justified"},
        )
        record_event(
            action="request.denied",
            actor=BOB,
            channel=Channel.SLACK,
            target=Target("request", "9", "REQ-9 shop"),
            project="shop",
            detail={"reason": "no ticket"},
        )
        record_event(
            action="auth.sign_in_failed",
            actor=ANONYMOUS,
            channel=Channel.WEB,
            detail={"username": "mallory", "method": "password"},
        )
        record_event(
            action="slack.forged_request",
            actor=ANONYMOUS,
            channel=Channel.SLACK,
            detail={"reason": "bad signature"},
        )


def _unmasks(**filters) -> list[tuple]:
    return list(unmask_rows(AuditFilter(**filters), EVERYTHING))


# --- who saw unmasked data ---------------------------------------------------------------------


def test_unmasks_name_the_approver_reason_duration_and_rows_returned(log):
    alice = next(r for r in _unmasks() if r[1] == "Alice Engineer")
    row = dict(zip(REPORTS["unmasks"].columns, alice, strict=True))

    assert row["columns"] == [EMAIL] and row["project"] == "shop" and row["reason"] == "grant"
    assert (row["request"], row["request_reason"]) == ("REQ-5", "INC-4711 refund mismatch")
    assert row["approved_by"] == "Bob Lead"
    assert row["approved_at"] - row["requested_at"] == timedelta(minutes=30)
    assert row["duration"] == "60d 0h 00m"
    assert row["rows_returned"] == 42


def test_unmasks_under_an_exemption_show_its_reason_and_nothing_for_what_is_unknown(log):
    dan = next(r for r in _unmasks() if r[1] == "Dan Support")
    row = dict(zip(REPORTS["unmasks"].columns, dan, strict=True))

    assert (row["reason"], row["request_reason"], row["project"]) == (
        "exemption",
        "Support reads emails for tickets",
        "shop",
    )
    assert row["approved_by"] == "" and row["rows_returned"] is None


@pytest.mark.parametrize(
    ("filters", "people"),
    [
        ({}, {"Alice Engineer", "Carol Support", "Dan Support"}),
        ({"person": "alice"}, {"Alice Engineer"}),
        ({"person": "3"}, {"Carol Support"}),
        ({"project": "analytics"}, {"Carol Support"}),
        ({"role": "support-agents"}, {"Dan Support"}),
        ({"instance": "warehouse"}, {"Carol Support"}),
        ({"database": "shop"}, {"Alice Engineer", "Dan Support"}),
        ({"column": "phone"}, {"Dan Support"}),
        ({"action": "exemption"}, {"Dan Support"}),
        ({"date_from": FEB + timedelta(days=1)}, set()),
        ({"date_to": FEB}, set()),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_each_filter_narrows_the_unmask_report(log, filters, people):
    assert {r[1] for r in _unmasks(**filters)} == people


def test_a_project_auditor_sees_only_unmasks_in_their_projects(log):
    rows = list(unmask_rows(AuditFilter(), AuditScope(frozenset({"analytics"}))))

    assert [r[1] for r in rows] == ["Carol Support"]


def test_the_unmask_summary_counts_per_person(log):
    summary = {row[0]: row for row in unmask_summary(AuditFilter(), EVERYTHING)}

    assert summary["Alice Engineer"][1:4] == (1, [EMAIL], 42)


# --- in force -------------------------------------------------------------------------------------


def _in_force(at: datetime, scope: AuditScope = EVERYTHING, **filters) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in in_force_rows(AuditFilter(at=at, **filters), scope)}


def test_grants_and_exemptions_in_force_are_replayed_to_the_moment(log):
    assert _in_force(JAN - timedelta(days=1)) == set()
    assert _in_force(JAN + timedelta(days=1)) == {("exemption", "10"), ("grant", "11"), ("grant", "21")}
    assert _in_force(FEB + timedelta(days=1)) == {("exemption", "10"), ("grant", "11")}, "21 was revoked"
    assert _in_force(JAN + timedelta(days=61)) == {("exemption", "10")}, "grants expire"


def test_a_grant_ended_through_its_request_is_no_longer_in_force(log):
    with _at(FEB + timedelta(days=2)):
        record_event(
            action="grant.expired",
            actor=SYSTEM,
            channel=Channel.SYSTEM,
            target=Target("request", "5", "REQ-5 shop"),
            project="shop",
            detail={},
        )

    assert ("grant", "11") not in _in_force(FEB + timedelta(days=3))


def test_an_extension_is_in_force_from_its_start_not_its_approval(log):
    starts = FEB + timedelta(days=5)
    with _at(FEB + timedelta(days=2)):
        record_event(
            action="grant.created",
            actor=BOB,
            channel=Channel.WEB,
            target=Target("grant", "31", "REQ-31"),
            project="shop",
            detail={"principal": "user:1", "starts_at": starts, "expires_at": starts + timedelta(hours=1)},
        )

    assert ("grant", "31") not in _in_force(FEB + timedelta(days=3))
    assert ("grant", "31") in _in_force(starts + timedelta(minutes=1))
    assert ("grant", "31") not in _in_force(starts + timedelta(hours=2))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"project": "shop"}, {("exemption", "10"), ("grant", "11")}),
        ({"person": "user:1"}, {("grant", "11")}),
        ({"role": "support-agents"}, {("exemption", "10")}),
        ({"instance": "warehouse"}, {("grant", "21")}),
        ({"database": "shop"}, {("grant", "11")}),
        ({"column": "ip"}, {("grant", "21")}),
        ({"action": "exemption"}, {("exemption", "10")}),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_each_filter_narrows_the_in_force_report(log, filters, expected):
    assert _in_force(JAN + timedelta(days=1), **filters) == expected


def test_a_project_auditor_sees_only_their_projects_in_force(log):
    assert _in_force(JAN + timedelta(days=1), AuditScope(frozenset({"shop"}))) == {
        ("exemption", "10"),
        ("grant", "11"),
    }


# --- policy history ------------------------------------------------------------------------------


def test_policy_history_shows_before_and_after(log):
    rows = list(policy_rows(AuditFilter(), EVERYTHING))
    actions = [r[2] for r in rows]

    assert actions == ["exemption.created", "rule.updated", "catalog.classification_changed"]
    rule = rows[1]
    assert (rule[8], rule[9]) == ({"condition": "false"}, {"condition": "true"})


@pytest.mark.parametrize(
    ("filters", "actions"),
    [
        ({"project": "shop"}, ["exemption.created", "catalog.classification_changed"]),
        ({"person": "Erin"}, ["exemption.created", "rule.updated"]),
        ({"role": "support-agents"}, ["exemption.created"]),
        ({"column": "phone"}, ["catalog.classification_changed"]),
        ({"action": "rule."}, ["rule.updated"]),
        ({"date_from": FEB}, ["rule.updated", "catalog.classification_changed"]),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_each_filter_narrows_the_policy_history(log, filters, actions):
    assert [r[2] for r in policy_rows(AuditFilter(**filters), EVERYTHING)] == actions


def test_project_auditors_see_global_rule_changes_but_not_other_projects(log):
    actions = [r[2] for r in policy_rows(AuditFilter(), AuditScope(frozenset({"analytics"})))]

    assert actions == ["rule.updated"]


# --- break-glass, denied ----------------------------------------------------------------------------


def test_break_glass_uses_show_whether_they_were_reviewed(log):
    rows = {r[0]: r for r in breakglass_rows(AuditFilter(), EVERYTHING)}

    assert rows["7"][5] == "pending review" and rows["7"][2] == "Alice Engineer"
    assert rows["8"][5:9] == ("reviewed", rows["8"][6], "Erin Security", "justified")
    assert [r[0] for r in breakglass_rows(AuditFilter(action="pending"), EVERYTHING)] == ["7"]
    assert [r[0] for r in breakglass_rows(AuditFilter(person="carol"), EVERYTHING)] == ["8"]
    assert list(breakglass_rows(AuditFilter(project="analytics"), EVERYTHING)) == []


def test_denied_and_unauthorized_attempts(log):
    actions = [r[2] for r in denied_rows(AuditFilter(), EVERYTHING)]

    assert actions == ["request.denied", "auth.sign_in_failed", "slack.forged_request"]
    assert [r[2] for r in denied_rows(AuditFilter(person="mallory"), EVERYTHING)] == ["auth.sign_in_failed"]
    assert [r[2] for r in denied_rows(AuditFilter(), AuditScope(frozenset({"shop"})))] == ["request.denied"]


# --- the event search ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "count"),
    [
        ({"action": "grant"}, 3),
        ({"action": "grant.created"}, 2),
        ({"project": "analytics"}, 5),
        ({"person": "local:3"}, 2),
        ({"person": "Bob"}, 8),
        ({"role": "support-agents"}, 1),
        ({"instance": "warehouse"}, 1),
        ({"database": "analytics"}, 2),
        ({"column": "customers.phone"}, 1),
        ({"date_to": FEB}, 9),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_each_filter_narrows_the_event_search(log, filters, count):
    assert events_matching(AuditFilter(**filters), EVERYTHING).count() == count


def test_filters_parse_dates_and_name_a_bad_one():
    flt = AuditFilter.from_mapping({"from": "2026-01-01", "to": "2026-01-31", "person": " alice "})

    assert flt.date_from == datetime(2026, 1, 1, tzinfo=UTC)
    assert flt.date_to == datetime(2026, 2, 1, tzinfo=UTC), "a bare `to` date includes that day"
    assert flt.person == "alice"
    with pytest.raises(ValueError, match="from: 'soon' is not a date"):
        AuditFilter.from_mapping({"from": "soon"})


def test_the_dashboard_counts_unmasks_reviews_and_latency(log):
    board = dashboard(EVERYTHING, now=FEB + timedelta(days=1))

    assert sum(bar.value for bar in board.unmasks_per_week) == 3
    assert board.pending_breakglass == 1
    assert board.approvals == 2 and board.latency_median == "1h 00m"
    assert {bar.label: bar.value for bar in board.approval_latency}["5-60 min"] == 1
    assert board.top_unmasked_columns[0].value == 1
    assert board.denied == 3
    restricted = dashboard(AuditScope(frozenset({"analytics"})), now=FEB + timedelta(days=1))
    assert sum(bar.value for bar in restricted.unmasks_per_week) == 1 and restricted.pending_breakglass == 0


@pytest.mark.parametrize(
    ("raw", "end_of_day"),
    [("9999-12-31", True), ("9999-12-31", False), ("0001-01-01", False), ("9999-12-31T23:00:00", False)],
)
def test_a_date_out_of_range_is_named_not_an_overflow(raw, end_of_day):
    key = "to" if end_of_day else "from"
    with pytest.raises(ValueError, match=f"{key}: must be between 1970-01-01 and 8999-12-31"):
        AuditFilter.from_mapping({key: raw})


SEARCH_INDEXES = {
    "person": {"auditevent_actor_id_trgm", "auditevent_actor_name_trgm", "auditevent_detail_trgm"},
    "role": {"auditevent_detail_trgm"},
    "column": {"auditevent_target_id_trgm", "auditevent_detail_trgm"},
}


@pytest.mark.parametrize("name", sorted(SEARCH_INDEXES))
def test_the_text_filters_can_use_their_trigram_indexes(log, name):
    """A value found nowhere must not read the whole log: with sequential scans priced out (this
    table is tiny), the plan reads the filter's trigram indexes, on the expressions it compiles to."""
    from django.db import connection

    events = events_matching(AuditFilter(**{name: "nobody-at-all"}), EVERYTHING).order_by("-seq")[:51]
    sql, params = events.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert {index for index in SEARCH_INDEXES[name] if index in plan} == SEARCH_INDEXES[name], plan
