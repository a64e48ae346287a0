"""The only writer of the audit log.

Call `record_event` inside the transaction of the change it records: if the event cannot be
written the whole change rolls back, so nothing happens that the log does not show.

Decision records and access events are written without the chain lock (the decision path must not
queue behind it); `seal_decisions` later folds them into the chain, and `checkpoint_create` signs
where the chain has reached. Both run periodically from `audit.tasks`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from audit import signing
from audit.chain import EVENT_FIELDS, canonical_event, chain_hash
from audit.decision_log import write_decision_record
from audit.models import AccessEvent, ActorType, AuditEvent, ChainHead, Channel, Checkpoint
from audit.published import publish_checkpoint
from audit.selectors import (
    SEAL_ACTION,
    SEALED_TABLES,
    checkpoint_message,
    committed_watermark,
    digest_range,
    last_sealed_ids,
    latest_boundary,
)
from shared.metrics import count_unmask_record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who acted, as plain values so `audit` needs no other app's models."""

    type: str
    id: str = ""
    name: str = ""


SYSTEM = Actor(type=ActorType.SYSTEM, id="veil", name="Veil")
ANONYMOUS = Actor(type=ActorType.ANONYMOUS)


@dataclass(frozen=True)
class Target:
    type: str
    id: str
    repr: str = ""


def _jsonable(detail: dict[str, Any] | None) -> dict[str, Any]:
    """Normalise detail to what the JSON column gives back, so the stored row re-hashes the same."""
    return json.loads(json.dumps(detail or {}, cls=DjangoJSONEncoder))


# Lock the head, then insert the event and move the head in one statement: two round trips. The hash
# and the MAC are computed here, not in SQL, because the MAC's key must never reach the database.
_LOCK_HEAD_SQL = "SELECT seq, hash FROM audit_chainhead WHERE id = 1 FOR UPDATE"
_APPEND_SQL = f"""
WITH event AS (
    INSERT INTO audit_auditevent ({", ".join(EVENT_FIELDS)}, mac)
    VALUES ({", ".join(["%s"] * (len(EVENT_FIELDS) + 1))})
    RETURNING id
),
moved AS (UPDATE audit_chainhead SET seq = %s, hash = %s WHERE id = 1)
SELECT id FROM event
"""  # noqa: S608 (the column names are `EVENT_FIELDS`, constants)


def _append_postgresql(fields: dict[str, Any]) -> AuditEvent | None:
    """Append `fields` as the next event. None if there is no chain head row yet."""
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_HEAD_SQL)
        head = cursor.fetchone()
        if head is None:
            return None
        event = _chained(fields, prev_seq=head[0], prev_hash=head[1])
        params = [
            json.dumps(event.detail) if name == "detail" else getattr(event, name) for name in EVENT_FIELDS
        ]
        params += [event.mac, event.seq, event.hash]
        cursor.execute(_APPEND_SQL, params)
        event.id = cursor.fetchone()[0]
    event._state.adding, event._state.db = False, connection.alias
    return event


def _chained(fields: dict[str, Any], *, prev_seq: int, prev_hash: str) -> AuditEvent:
    seq = prev_seq + 1
    digest = chain_hash(prev_hash, canonical_event(seq=seq, **fields))
    return AuditEvent(seq=seq, prev_hash=prev_hash, hash=digest, mac=signing.event_mac(seq, digest), **fields)


@transaction.atomic
def record_event(
    *,
    action: str,
    actor: Actor,
    channel: str,
    target: Target | None = None,
    project: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain.

    Locking contract: takes the chain head FOR UPDATE, so concurrent writers append one at a time
    and the chain order is the commit order. Hold the lock briefly: call this last in a transaction.
    `occurred_at` is read just before the lock is asked for.
    """
    fields: dict[str, Any] = {
        "occurred_at": timezone.now(),
        "actor_type": actor.type,
        "actor_id": actor.id[:255],
        "actor_name": actor.name[:255],
        "action": action,
        "target_type": target.type if target else "",
        "target_id": str(target.id)[:255] if target else "",
        "target_repr": target.repr[:500] if target else "",
        "project": project,
        "channel": channel,
        "detail": _jsonable(detail),
    }
    if connection.vendor == "postgresql":
        event = _append_postgresql(fields)
        if event is None:  # the very first event: there is no chain head yet
            ChainHead.objects.get_or_create(id=1)
            event = _append_postgresql(fields)
        assert event is not None
        return event
    head, _ = ChainHead.objects.select_for_update().get_or_create(id=1)
    event = _chained(fields, prev_seq=head.seq, prev_hash=head.hash)
    event.save(force_insert=True)
    head.seq, head.hash = event.seq, event.hash
    head.save(update_fields=["seq", "hash"])
    return event


def record_unmask_decisions(
    *,
    service_account: str,
    principal_type: str,
    principal_id: str,
    principal_name: str,
    query_id: str,
    policy_version: int,
    asserted_groups: list[str],
    unmasked: list[dict[str, Any]],
) -> int:
    """One row holding every unmask answer of one decision request; returns its id once committed.
    Raises if it cannot be written; the caller must then answer mask (an unmask is never sent
    unrecorded). How the write is kept cheap: `audit.decision_log`."""
    try:
        record_id = write_decision_record(
            (
                timezone.now(),
                service_account,
                principal_type,
                principal_id,
                principal_name[:255],
                query_id,
                policy_version,
                asserted_groups,
                unmasked,
            )
        )
    except Exception:
        count_unmask_record(written=False)
        raise
    count_unmask_record(written=True)
    return record_id


def record_access_events(*, service_account: str, events: list[dict[str, Any]]) -> int:
    """Store a batch of what a data-access layer returned, in one INSERT. Returns how many."""
    now = timezone.now()
    AccessEvent.objects.bulk_create(
        [AccessEvent(received_at=now, service_account=service_account, **event) for event in events]
    )
    return len(events)


def seal_decisions(*, max_rows: int = 50_000) -> AuditEvent | None:
    """Fold the decision records and access events written since the last seal into the chain.

    Appends one `audit.decisions_sealed` event whose detail holds, per table, the id range
    (after_id, last_id], the row count, the SHA-256 of the rows' canonical forms and the ids of the
    range that have no row (`missing`: deleted before sealing); `verify_chain` re-digests them and
    reports every missing id. Only rows below the committed watermark are sealed, so a row that commits late
    is never skipped. At most `max_rows` per table per event; call again to continue.

    Idempotency key: the last sealed ids, read from the chain. The digests are computed without the
    chain lock; under it the run checks that no other run sealed meanwhile, and backs off if one did,
    so re-running (or two workers at once) never seals a row twice. Returns the event, or None.

    Call it outside a transaction (the task does): the watermark's table lock is meant to be
    released at once, not held until an enclosing transaction ends.
    """
    claimed = last_sealed_ids()
    # A table's first sealed rows start wherever its ids start (a test database's, or a restored
    # one's, need not start at 1); after that, and after an archive boundary, every seal expects the
    # ids right after the previous one.
    from_first_row = latest_boundary() is None
    try:
        ranges = {
            table: digest_range(
                table,
                after_id=claimed[table],
                last_id=max(claimed[table], committed_watermark(table)),
                limit=max_rows,
                contiguous_from=0 if from_first_row and claimed[table] == 0 else None,
            )
            for table in SEALED_TABLES
        }
    except OperationalError:
        logger.warning("sealing skipped: inserts in flight held the tables past lock_timeout")
        return None
    if not any(r.count for r in ranges.values()):
        return None
    for table, sealed in ranges.items():
        if sealed.missing:
            logger.error(
                "audit seal: %s ids %s are missing (deleted before sealing, or never committed)",
                table,
                ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in sealed.missing),
            )
    with transaction.atomic():
        ChainHead.objects.select_for_update().get_or_create(id=1)
        if last_sealed_ids() != claimed:
            return None
        return record_event(
            action=SEAL_ACTION,
            actor=SYSTEM,
            channel=Channel.SYSTEM,
            detail={table: r.as_dict() for table, r in ranges.items()},
        )


def checkpoint_create() -> Checkpoint | None:
    """Sign the chain head (seq, hash) and store it. Does nothing if the head has not moved since the
    last checkpoint, or if the head names an event that is not there (a broken log is not signed:
    it is logged as an error for someone to run `audit verify`).

    The signed checkpoint is also published outside the database once committed (a log line, and
    the file and webhook of `audit.published`), where a database rewrite cannot take it back.
    """
    head = ChainHead.objects.filter(id=1).first()
    if head is None or head.seq == 0:
        return None
    if Checkpoint.objects.filter(seq__gte=head.seq).exists():
        return None
    if not AuditEvent.objects.filter(seq=head.seq, hash=head.hash).exists():
        logger.error(
            "audit checkpoint refused: chain head #%s names no such event; run audit verify", head.seq
        )
        return None
    signed_at = timezone.now()
    key_id, signature = signing.sign(checkpoint_message(seq=head.seq, hash=head.hash, signed_at=signed_at))
    try:
        with transaction.atomic():
            checkpoint = Checkpoint.objects.create(
                seq=head.seq, hash=head.hash, signed_at=signed_at, key_id=key_id, signature=signature
            )
    except IntegrityError:  # another worker signed the same head first
        return None
    transaction.on_commit(lambda: publish_checkpoint(checkpoint))
    return checkpoint
