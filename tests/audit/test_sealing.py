"""Decision records and access events are written without the chain lock and sealed into the chain
later; after that, editing, deleting or inserting one is detected by `audit verify`."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.models import AuditEvent
from audit.selectors import SEAL_ACTION, verify_chain
from audit.services import record_access_events, record_unmask_decisions, seal_decisions
from tests.audit.conftest import raw_sql


def _decide(n: int, person: str = "alice") -> list[int]:
    ids = []
    for i in range(n):
        ids.append(
            record_unmask_decisions(
                service_account="sql-proxy",
                principal_type="user",
                principal_id="7",
                principal_name=person,
                query_id=f"q{i}",
                policy_version=3,
                asserted_groups=[],
                unmasked=[
                    {
                        "column": "prod-pg/shop/public.customers.email",
                        "reason": "grant",
                        "id": 1,
                        "expires_at": 1900000000.5,
                        "request": "REQ-1",
                    }
                ],
            )
        )
    return ids


def _report_access(n: int) -> None:
    record_access_events(
        service_account="sql-proxy",
        events=[
            {
                "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
                "principal_type": "user",
                "principal": "alice",
                "query_id": f"q{i}",
                "unmasked_columns": ["prod-pg/shop/public.customers.email"],
                "masked_columns": [],
                "row_count": 10 + i,
            }
            for i in range(n)
        ],
    )


@pytest.mark.django_db
def test_sealing_records_the_id_range_count_and_digest_once():
    ids = _decide(3)
    _report_access(2)

    event = seal_decisions()
    again = seal_decisions()

    assert event.action == SEAL_ACTION
    sealed = event.detail["decision_records"]
    assert (sealed["after_id"], sealed["last_id"], sealed["count"]) == (0, ids[-1], 3)
    assert len(sealed["sha256"]) == 64
    assert event.detail["access_events"]["count"] == 2
    assert again is None, "re-running seals nothing twice"
    result = verify_chain()
    assert result.ok and result.seals_checked == 1
    assert result.unsealed == {"decision_records": 0, "access_events": 0}


@pytest.mark.django_db
def test_the_next_seal_starts_where_the_last_ended():
    _decide(2)
    first = seal_decisions()
    later = _decide(1)

    second = seal_decisions()

    assert second.detail["decision_records"]["after_id"] == first.detail["decision_records"]["last_id"]
    assert second.detail["decision_records"]["last_id"] == later[-1]
    assert verify_chain().ok


@pytest.mark.django_db
def test_sealing_continues_in_batches():
    _decide(5)

    events = [seal_decisions(max_rows=2) for _ in range(4)]

    counts = [e.detail["decision_records"]["count"] if e else None for e in events]
    assert counts == [2, 2, 1, None]
    assert verify_chain().ok


@pytest.mark.django_db
def test_an_edited_decision_record_breaks_its_seal():
    ids = _decide(3)
    seal = seal_decisions()
    raw_sql(
        f"UPDATE audit_decisionrecord SET principal_name = 'nobody' WHERE id = {ids[1]}",
        table="audit_decisionrecord",
    )

    with pytest.raises(
        CommandError, match=rf"event #{seal.seq}: decision_records .* do not match their seal"
    ):
        call_command("audit", "verify")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM audit_decisionrecord WHERE id = (SELECT min(id) FROM audit_decisionrecord)",
        "INSERT INTO audit_decisionrecord (id, recorded_at, service_account, principal_type, principal_id,"
        " principal_name, query_id, policy_version, asserted_groups, unmasked)"
        " SELECT min(id) + 1, now(), 'x', 'user', '1', 'mallory', '', 1, '[]', '[]'"
        " FROM audit_decisionrecord",
    ],
    ids=["deleted", "inserted"],
)
def test_a_deleted_or_inserted_decision_record_breaks_its_seal(statement):
    ids = _decide(3)
    raw_sql(f"DELETE FROM audit_decisionrecord WHERE id = {ids[1]}", table="audit_decisionrecord")
    seal_decisions()
    raw_sql(statement, table="audit_decisionrecord")

    result = verify_chain()

    # The gap made before sealing is named too (the seal recorded it); the change after it as well.
    assert not result.ok and "missing when sealed" in result.first_break.reason
    assert any("do not match their seal" in b.reason for b in result.breaks)


@pytest.mark.django_db
def test_an_edited_access_event_breaks_its_seal():
    _report_access(2)
    seal_decisions()
    raw_sql("UPDATE audit_accessevent SET row_count = 0", table="audit_accessevent")

    result = verify_chain()

    assert not result.ok and "access_events" in result.first_break.reason


def test_a_row_from_before_fingerprints_and_tool_calls_digests_as_it_did_then():
    from audit.chain import ACCESS_EVENT_FIELDS, canonical_row

    before = ACCESS_EVENT_FIELDS[: ACCESS_EVENT_FIELDS.index("fingerprint")]
    values = (1, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "sql-proxy", "user")
    values += ("alice", "q1", ["prod-pg/shop/public.customers.email"], [], 3)

    assert canonical_row(ACCESS_EVENT_FIELDS, (*values, "", {})) == canonical_row(before, values)
    assert canonical_row(ACCESS_EVENT_FIELDS, (*values, "6d80dcdfdc71c6f8", {})) != canonical_row(
        before, values
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change", ["fingerprint = '0000000000000000'", "tool_call = '{}'", "principal_type = 'service_account'"]
)
def test_an_edited_tool_call_or_fingerprint_breaks_its_seal(change):
    record_access_events(
        service_account="support-agent",
        events=[
            {
                "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
                "principal_type": "agent",
                "principal": "support-agent",
                "query_id": "q1",
                "unmasked_columns": [],
                "masked_columns": ["prod-pg/shop/public.customers.email"],
                "row_count": 3,
                "fingerprint": "6d80dcdfdc71c6f8",
                "tool_call": {"tool": "query", "arguments": {"sql": "string"}},
            }
        ],
    )
    seal_decisions()
    assert verify_chain().ok
    raw_sql(f"UPDATE audit_accessevent SET {change}", table="audit_accessevent")

    result = verify_chain()

    assert not result.ok and "access_events" in result.first_break.reason


@pytest.mark.django_db(transaction=True)
def test_a_decision_committing_late_is_sealed_not_skipped():
    """A row whose id was drawn before the seal but commits after must not fall between seals."""
    _decide(1)
    inserted, release, done = threading.Event(), threading.Event(), threading.Event()

    def slow_writer() -> None:
        from django.db import transaction

        try:
            with transaction.atomic():
                _decide(1, person="late")
                inserted.set()
                release.wait(timeout=10)
        finally:
            connection.close()
            done.set()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    inserted.wait(timeout=10)
    _decide(1, person="after")  # a higher id that commits first

    results: list = []
    sealer = threading.Thread(target=lambda: (results.append(seal_decisions()), connection.close()))
    sealer.start()
    _wait_until_blocked_on_a_lock()
    release.set()
    sealer.join(timeout=10)
    writer.join(timeout=10)

    names = list(AuditEvent.objects.filter(action=SEAL_ACTION).values_list("detail", flat=True))
    assert sum(d["decision_records"]["count"] for d in names) + _unsealed() == 3
    seal_decisions()
    assert _unsealed() == 0
    assert verify_chain().ok


def _unsealed() -> int:
    return verify_chain().unsealed["decision_records"]


def _wait_until_blocked_on_a_lock() -> None:
    """Wait (bounded) until some session waits for a lock: the sealer queued behind the writer, or
    it gave up (lock_timeout) and returned, which the assertions also accept."""
    with connection.cursor() as cursor:
        for _ in range(200):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
            cursor.execute("SELECT pg_sleep(0.01)")
