"""The audit log is append-only and hash-chained: tampering is refused or detected."""

from __future__ import annotations

import itertools
import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent, Channel
from audit.selectors import verify_chain
from audit.services import SYSTEM, Target, record_event
from tests.audit.conftest import raw_sql


def _write(n: int) -> None:
    for i in range(n):
        record_event(
            action="test.event",
            actor=SYSTEM,
            channel=Channel.SYSTEM,
            target=Target("thing", str(i)),
            detail={"i": i, "note": 'comma, "quote"\nnewline'},
        )


@pytest.mark.django_db
def test_events_form_a_chain_that_verifies():
    _write(5)

    result = verify_chain()
    assert result.ok and result.events_checked == 5
    events = list(AuditEvent.objects.all())
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET actor_name = 'x' WHERE seq = 2",
        "DELETE FROM audit_auditevent WHERE seq = 2",
        "TRUNCATE audit_auditevent",
    ],
)
def test_the_database_refuses_changes_to_the_log(statement):
    _write(3)

    with (
        pytest.raises(DatabaseError, match=r"append-only|Cannot"),
        transaction.atomic(),
        connection.cursor() as c,
    ):
        c.execute(statement)
    assert AuditEvent.objects.count() == 3


@pytest.mark.django_db
def test_an_edited_event_is_named_by_verify():
    _write(5)
    raw_sql("UPDATE audit_auditevent SET detail = '{\"i\": 99}' WHERE seq = 3")

    with pytest.raises(CommandError, match=r"event #3: content does not match"):
        call_command("audit", "verify")


@pytest.mark.django_db
def test_a_deleted_event_is_detected():
    _write(5)
    raw_sql("DELETE FROM audit_auditevent WHERE seq = 2")

    result = verify_chain()
    assert not result.ok and result.breaks[0].seq == 3


@pytest.mark.django_db
def test_an_inserted_event_is_detected():
    _write(3)
    raw_sql(
        "INSERT INTO audit_auditevent (seq, occurred_at, actor_type, actor_id, actor_name, action,"
        " target_type, target_id, target_repr, project, channel, detail, prev_hash, hash)"
        " SELECT 4, now(), 'user', 'x', 'mallory', 'grant.created', '', '', '', '', 'web', '{}', hash,"
        " repeat('a', 64) FROM audit_auditevent WHERE seq = 3"
    )

    result = verify_chain()
    assert not result.ok and result.breaks[0].seq == 4


@pytest.mark.django_db
def test_a_cut_tail_is_detected_against_the_chain_head():
    _write(4)
    raw_sql("DELETE FROM audit_auditevent WHERE seq = 4")

    result = verify_chain()
    assert not result.ok and "tail" in result.breaks[0].reason


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_one_valid_chain():
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            _write(10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    result = verify_chain()
    assert result.ok, result.breaks
    assert result.events_checked == 60


@pytest.mark.django_db
def test_the_database_computes_the_same_hash_as_python_for_awkward_events():
    for name in ['Zoë "Z"', "back\\slash", "tab\tand\nnewline", "emoji 🙂", ""]:
        record_event(
            action="test.awkward",
            actor=SYSTEM,
            channel=Channel.SYSTEM,
            target=Target("t", name, name),
            detail={"name": name, "n": [1.25, None, True]},
        )

    assert verify_chain().ok
