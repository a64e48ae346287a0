"""Retention: old events leave only through `audit archive`, which exports and signs them first,
and the chain still verifies from the recorded boundary afterwards."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command

from audit.archive import ArchiveError, archive_before
from audit.chain import GENESIS_HASH
from audit.exports import verify_export
from audit.models import ArchiveBoundary, AuditEvent, Channel, DecisionRecord
from audit.selectors import ARCHIVE_ACTION, verify_chain
from audit.services import SYSTEM, checkpoint_create, record_event, record_unmask_decisions, seal_decisions
from tests.audit.conftest import raw_sql, rehash

pytestmark = pytest.mark.django_db
OLD = datetime(2018, 3, 1, tzinfo=UTC)
CUTOFF = datetime(2019, 1, 1, tzinfo=UTC)


def _event(i: int) -> AuditEvent:
    return record_event(action="test.event", actor=SYSTEM, channel=Channel.SYSTEM, detail={"i": i})


def _decision() -> int:
    return record_unmask_decisions(
        service_account="proxy",
        principal_type="user",
        principal_id="1",
        principal_name="alice",
        query_id="q",
        policy_version=1,
        asserted_groups=[],
        unmasked=[{"column": "i/d/s.t.c", "reason": "grant", "id": 1}],
    )


@pytest.fixture
def old_and_new_log():
    """Three old events with a sealed decision, then two recent ones with another."""
    with time_machine.travel(OLD, tick=False):
        for i in range(3):
            _event(i)
        _decision()
        seal_decisions()
        checkpoint_create()
    for i in range(3, 5):
        _event(i)
    recent = _decision()
    seal_decisions()
    checkpoint_create()
    return recent


def test_archive_exports_removes_and_leaves_a_chain_that_verifies(old_and_new_log, audit_files):
    result = archive_before(before=CUTOFF, out_dir=audit_files / "archive", actor=SYSTEM, channel=Channel.CLI)

    assert (result.events_removed, result.decision_records_removed) == (4, 1)
    assert result.boundary.first_seq == 5
    assert not AuditEvent.objects.filter(seq__lt=5).exists()
    assert list(DecisionRecord.objects.values_list("pk", flat=True)) == [old_and_new_log]
    archived = AuditEvent.objects.filter(action=ARCHIVE_ACTION).get()
    assert archived.detail["first_remaining_seq"] == 5
    assert archived.detail["genesis_hash"] == AuditEvent.objects.get(seq=5).prev_hash
    verification = verify_chain()
    assert verification.ok, verification.breaks
    assert verification.first_seq == 5 and verification.seals_checked == 1
    call_command("audit", "verify")


def test_the_archive_files_verify_and_rebuild_the_removed_chain(old_and_new_log, audit_files):
    result = archive_before(before=CUTOFF, out_dir=audit_files / "archive", actor=SYSTEM, channel=Channel.CLI)

    for export in (result.events_export, result.rows_export):
        assert verify_export(export.path, export.manifest_path) == []
    prev = GENESIS_HASH
    for line in result.events_export.path.read_text().splitlines():
        event = json.loads(line)
        assert event["prev_hash"] == prev
        prev = rehash(event)
        assert prev == event["hash"]
    assert prev == result.boundary.prev_hash
    tables = [json.loads(line)["table"] for line in result.rows_export.path.read_text().splitlines()]
    assert tables == ["decision_records", "access_events"][: len(tables)] and "decision_records" in tables


def test_archive_refuses_events_still_within_retention(old_and_new_log, audit_files, settings):
    settings.AUDIT_RETENTION_DAYS = 365

    with pytest.raises(ArchiveError, match="retention is 365 days"):
        archive_before(
            before=datetime.now(UTC) - timedelta(days=10),
            out_dir=audit_files,
            actor=SYSTEM,
            channel=Channel.CLI,
        )
    assert AuditEvent.objects.filter(seq=1).exists()


def test_archive_refuses_a_log_that_does_not_verify(old_and_new_log, audit_files):
    raw_sql("UPDATE audit_auditevent SET actor_name = 'x' WHERE seq = 2")

    with pytest.raises(CommandError, match="does not verify"):
        call_command("audit", "archive", "--before", "2019-01-01", "--out-dir", str(audit_files))
    assert AuditEvent.objects.filter(seq=1).exists()


def test_a_second_archive_continues_from_the_first_boundary(audit_files):
    with time_machine.travel(datetime(2017, 6, 1, tzinfo=UTC), tick=False):
        _event(0)
        _decision()
        seal_decisions()
    with time_machine.travel(OLD, tick=False):
        _event(1)
        _decision()
        seal_decisions()
        checkpoint_create()
    _event(2)
    first = archive_before(
        before=datetime(2018, 1, 1, tzinfo=UTC), out_dir=audit_files / "a", actor=SYSTEM, channel=Channel.CLI
    )

    second = archive_before(before=CUTOFF, out_dir=audit_files / "b", actor=SYSTEM, channel=Channel.CLI)

    assert (first.events_removed, first.decision_records_removed) == (2, 1)
    assert (second.events_removed, second.decision_records_removed) == (2, 1)
    assert second.boundary.first_seq == first.boundary.first_seq + 2
    assert second.events_export.manifest["archive"]["prev_hash"] == first.boundary.prev_hash
    result = verify_chain()
    assert result.ok, result.breaks
    assert result.first_seq == second.boundary.first_seq


def test_a_deleted_archive_boundary_is_detected(old_and_new_log, audit_files):
    archive_before(before=CUTOFF, out_dir=audit_files, actor=SYSTEM, channel=Channel.CLI)
    raw_sql("DELETE FROM audit_archiveboundary", table="audit_archiveboundary")

    result = verify_chain()

    assert not result.ok and result.first_break.reason == "expected event #1, found #5"


def test_a_forged_archive_boundary_cannot_hide_a_deleted_prefix(old_and_new_log):
    raw_sql("DELETE FROM audit_auditevent WHERE seq < 3")
    prev_hash = AuditEvent.objects.get(seq=3).prev_hash
    raw_sql(
        "INSERT INTO audit_archiveboundary (first_seq, prev_hash, decisions_after_id, access_events_after_id,"
        f" archived_before, archived_at, export_sha256, key_id, signature) VALUES (3, '{prev_hash}', 0, 0,"
        " now(), now(), '', 'k', 'c2lnbmF0dXJl')",
        table="audit_archiveboundary",
    )

    result = verify_chain()

    assert not result.ok and "archive boundary has an invalid signature" in result.first_break.reason
    assert ArchiveBoundary.objects.count() == 1
