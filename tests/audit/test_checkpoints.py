"""Signed checkpoints catch what the chain alone cannot: a tail cut together with the chain head."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent, ChainHead, Channel, Checkpoint
from audit.selectors import verify_chain
from audit.services import SYSTEM, checkpoint_create, record_event
from tests.audit.conftest import raw_sql

pytestmark = pytest.mark.django_db


def _write(n: int) -> list[AuditEvent]:
    return [
        record_event(action="test.event", actor=SYSTEM, channel=Channel.SYSTEM, detail={"i": i})
        for i in range(n)
    ]


def _cut_tail_and_head(keep: int) -> None:
    """What someone with database access does to hide the last events: delete them and roll the
    chain head back to the new last event, so the chain itself is consistent again."""
    last = AuditEvent.objects.get(seq=keep)
    raw_sql(f"DELETE FROM audit_auditevent WHERE seq > {keep}")
    ChainHead.objects.filter(id=1).update(seq=keep, hash=last.hash)


def test_a_checkpoint_signs_the_chain_head_once():
    _write(3)

    first = checkpoint_create()
    again = checkpoint_create()

    assert first is not None and (first.seq, first.hash) == (3, AuditEvent.objects.get(seq=3).hash)
    assert again is None, "nothing new to sign"
    assert verify_chain().checkpoints_checked == 1


def test_a_tail_cut_with_its_chain_head_passes_the_chain_but_not_the_checkpoints():
    _write(6)
    checkpoint_create()
    _cut_tail_and_head(keep=4)

    result = verify_chain()

    assert not result.ok
    assert result.first_break.seq == 5, "names the first missing event"
    assert "tail cut" in result.first_break.reason
    with pytest.raises(CommandError, match=r"event #5: missing: checkpoint signed .* names event #6"):
        call_command("audit", "verify")


def test_a_rewritten_chain_does_not_match_its_checkpoint():
    _write(4)
    checkpoint_create()
    # Rewrite event 4 and re-hash it consistently (a forger with the code but not the key).
    event = AuditEvent.objects.get(seq=4)
    from audit.chain import canonical_event, chain_hash

    forged = chain_hash(
        event.prev_hash,
        canonical_event(
            seq=4,
            occurred_at=event.occurred_at,
            actor_type="system",
            actor_id="veil",
            actor_name="Veil",
            action="test.event",
            target_type="",
            target_id="",
            target_repr="",
            project="",
            channel="system",
            detail={"i": 999},
        ),
    )
    raw_sql(f"""UPDATE audit_auditevent SET detail='{{"i": 999}}', hash='{forged}' WHERE seq = 4""")
    ChainHead.objects.filter(id=1).update(hash=forged)

    result = verify_chain()

    # Found at the event changed, by its MAC (the checkpoint's key is the MAC's key).
    assert not result.ok and result.first_break.seq == 4
    assert "MAC" in result.first_break.reason


def test_a_forged_checkpoint_is_refused():
    _write(2)
    checkpoint = checkpoint_create()
    raw_sql(
        f"UPDATE audit_checkpoint SET signed_at = signed_at - interval '1 day' WHERE id = {checkpoint.pk}",
        table="audit_checkpoint",
    )

    result = verify_chain()

    assert not result.ok and "invalid signature" in result.first_break.reason


def test_checkpoints_verify_after_a_key_rotation_with_the_previous_key_listed(settings):
    _write(2)
    checkpoint_create()
    old_key = settings.VEIL_SIGNING_KEY
    settings.VEIL_SIGNING_KEY = "a-new-key"

    assert not verify_chain().ok, "the new key alone cannot check the old signature"
    settings.AUDIT_PREVIOUS_SIGNING_KEYS = [old_key]
    assert verify_chain().ok


def test_the_database_refuses_changes_to_checkpoints():
    from django.db import DatabaseError, transaction

    _write(1)
    checkpoint_create()
    with pytest.raises(DatabaseError, match="Cannot"), transaction.atomic():
        Checkpoint.objects.all().delete()
    assert Checkpoint.objects.count() == 1


def test_verify_warns_when_no_checkpoint_was_ever_signed():
    _write(1)

    assert any("no signed checkpoint" in w for w in verify_chain().warnings)


def test_a_hash_held_outside_the_database_catches_a_cut_that_took_the_checkpoints_too():
    events = _write(6)
    checkpoint_create()
    raw_sql("DELETE FROM audit_checkpoint", table="audit_checkpoint")
    _cut_tail_and_head(keep=4)

    assert verify_chain().ok, "with the checkpoints gone too, the database alone cannot tell"
    with pytest.raises(CommandError, match=r"event #6: missing: a hash held outside the database"):
        call_command("audit", "verify", "--expect", f"6:{events[5].hash}")
    call_command("audit", "verify", "--expect", f"3:{events[2].hash}")
