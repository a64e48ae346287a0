"""Reads of the audit log: the verification of everything that makes it tamper-evident.

`verify_chain` is what `manage.py audit verify`, every export manifest and the archive use. In one
pass over the events in chain order it checks:

- each event's hash and link (an edited, deleted or inserted event breaks the chain there), and its
  MAC, keyed outside the database (a tail rewritten and re-chained breaks at the first event changed);
- the chain's start: event #1 after the genesis hash, or the signed archive boundary;
- every signed checkpoint: its signature, and that the event it names is still there with that hash
  (a cut tail, where events and chain head were both rolled back, leaves checkpoints past the end);
- every `audit.decisions_sealed` event: the decision records and access events in its id range
  still digest to what was sealed, the ranges follow one another with no gap, and no id inside a
  range was missing when it was sealed (a row deleted before its seal);
- the chain head.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Max, Min
from django.db.models.expressions import RawSQL
from django.utils import timezone

from audit import signing
from audit.chain import (
    ACCESS_EVENT_FIELDS,
    DECISION_RECORD_FIELDS,
    EVENT_FIELDS,
    GENESIS_HASH,
    HASHED_EVENT_FIELDS,
    canonical_event,
    canonical_json,
    canonical_row,
    chain_hash,
)
from audit.models import AccessEvent, ArchiveBoundary, AuditEvent, ChainHead, Checkpoint, DecisionRecord
from audit.published import PublishedCheckpointError, read_published

logger = logging.getLogger(__name__)

SEAL_ACTION = "audit.decisions_sealed"
ARCHIVE_ACTION = "audit.archived"
SEALED_TABLES: dict[str, tuple[type[models.Model], tuple[str, ...]]] = {
    "decision_records": (DecisionRecord, DECISION_RECORD_FIELDS),
    "access_events": (AccessEvent, ACCESS_EVENT_FIELDS),
}


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


@dataclass
class ChainVerification:
    events_checked: int
    breaks: list[ChainBreak]
    first_seq: int = 1
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    checkpoints_checked: int = 0
    seals_checked: int = 0
    unsealed: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    verified_at: datetime = field(default_factory=timezone.now)

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def first_break(self) -> ChainBreak | None:
        return min(self.breaks, key=lambda b: b.seq) if self.breaks else None

    def summary(self) -> str:
        if not self.ok:
            first = self.first_break
            assert first is not None
            return f"audit chain broken at event #{first.seq}: {first.reason}"
        start = f" from archive boundary #{self.first_seq}" if self.first_seq > 1 else ""
        return (
            f"audit chain intact: {_counted(self.events_checked, 'event')} verified{start}, "
            f"{_counted(self.checkpoints_checked, 'signed checkpoint')}, "
            f"{_counted(self.seals_checked, 'decision seal')}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The form written into export manifests and the PDF."""
        first = self.first_break
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "first_break": asdict(first) if first else None,
            "events_checked": self.events_checked,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "checkpoints_checked": self.checkpoints_checked,
            "seals_checked": self.seals_checked,
            "unsealed": self.unsealed,
            "warnings": self.warnings,
            "verified_at": self.verified_at.isoformat(),
        }


def _counted(n: int, noun: str) -> str:
    """`1 signed checkpoint`, `2 signed checkpoints`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


# --- signed statements -------------------------------------------------------------------------


def checkpoint_message(*, seq: int, hash: str, signed_at: datetime) -> bytes:
    return canonical_json(
        {
            "type": "veil-audit-checkpoint",
            "v": 1,
            "seq": seq,
            "hash": hash,
            "signed_at": signed_at.isoformat(),
        }
    )


def boundary_message(boundary: ArchiveBoundary) -> bytes:
    return canonical_json(
        {
            "type": "veil-audit-archive-boundary",
            "v": 1,
            "first_seq": boundary.first_seq,
            "prev_hash": boundary.prev_hash,
            "decisions_after_id": boundary.decisions_after_id,
            "access_events_after_id": boundary.access_events_after_id,
            "archived_before": boundary.archived_before.isoformat(),
            "archived_at": boundary.archived_at.isoformat(),
            "export_sha256": boundary.export_sha256,
        }
    )


def latest_boundary() -> ArchiveBoundary | None:
    return ArchiveBoundary.objects.order_by("-first_seq").first()


# --- sealing reads -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SealedRange:
    """Rows with after_id < id <= last_id: how many, the SHA-256 of their canonical forms, and the
    ids of the range that have no row (`missing`, as [first, last] runs)."""

    after_id: int
    last_id: int
    count: int
    sha256: str
    missing: list[list[int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def digest_range(
    table: str,
    *,
    after_id: int,
    last_id: int,
    limit: int | None = None,
    chunk_size: int = 2000,
    contiguous_from: int | None = None,
) -> SealedRange:
    """Digest the rows of a sealed table in (after_id, last_id], in id order, in constant memory.

    With `limit`, stops after that many rows and ends the range at the last row read. Ids are
    expected without a gap from `contiguous_from` (default after_id + 1; None-like 0 means "from the
    first row", for the very first seal of a log): each run of absent ids is listed in `missing`,
    so a row deleted before it was sealed is named in the seal instead of vanishing unnoticed.
    """
    model, fields = SEALED_TABLES[table]
    rows = model._default_manager.filter(id__gt=after_id, id__lte=last_id).order_by("id").values_list(*fields)
    if limit is not None:
        rows = rows[:limit]
    digest, count, last_seen = hashlib.sha256(), 0, after_id
    expected = after_id + 1 if contiguous_from is None else contiguous_from
    missing: list[list[int]] = []
    for values in rows.iterator(chunk_size=chunk_size):
        digest.update(canonical_row(fields, values))
        digest.update(b"\n")
        if expected and values[0] > expected:
            missing.append([expected, values[0] - 1])
        expected = values[0] + 1
        count, last_seen = count + 1, values[0]
    end = last_seen if limit is not None and count >= limit else last_id
    if expected and end >= expected and count:
        missing.append([expected, end])
    return SealedRange(after_id, end, count, digest.hexdigest(), missing)


def ids_before_boundary(boundary: ArchiveBoundary | None) -> dict[str, int]:
    """Per sealed table, the last id archived with `boundary` (0 without one): where sealing starts."""
    return {
        "decision_records": boundary.decisions_after_id if boundary else 0,
        "access_events": boundary.access_events_after_id if boundary else 0,
    }


def last_sealed_ids(*, before_seq: int | None = None) -> dict[str, int]:
    """The last id sealed per table, read from the chain (the idempotency key of sealing); with
    `before_seq`, as sealed by the events before that one (what an archive cut there removes)."""
    seals = AuditEvent.objects.filter(action=SEAL_ACTION)
    if before_seq is not None:
        seals = seals.filter(seq__lt=before_seq)
    detail = seals.order_by("-seq").values_list("detail", flat=True).first()
    if detail is not None:
        return {table: int(detail[table]["last_id"]) for table in SEALED_TABLES}
    return ids_before_boundary(latest_boundary())


def committed_watermark(table: str) -> int:
    """The highest id such that every row at or below it is committed (or rolled back for good).

    Ids come from a sequence, so a row can commit after a row with a higher id. On PostgreSQL a
    SHARE lock waits for the inserts in flight (each holds ROW EXCLUSIVE from before it drew its id)
    and is released at once; `lock_timeout` bounds how long new inserts queue behind it. SQLite has
    one writer at a time, so the largest visible id is already a watermark.
    """
    model, _ = SEALED_TABLES[table]
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # The runtime role may not lock the table itself (it has no UPDATE or DELETE on it): the
            # function, owned by the migrating role, takes the lock (migration 0007).
            with connection.cursor() as cursor:
                cursor.execute("SELECT audit_committed_watermark(%s)", [model._meta.db_table])
                return int(cursor.fetchone()[0])
        return model._default_manager.aggregate(m=Max("id"))["m"] or 0


# --- verification ------------------------------------------------------------------------------


def _event_hash(row: tuple[Any, ...], prev_hash: str) -> str:
    """The chain hash of an event read as `EVENT_FIELDS` (its hashed fields lead)."""
    return chain_hash(prev_hash, canonical_event(**dict(zip(HASHED_EVENT_FIELDS, row, strict=False))))


def event_content_matches(event: AuditEvent) -> bool:
    """True if one event's stored fields still hash to its stored hash (given its prev_hash)."""
    row = tuple(getattr(event, name) for name in EVENT_FIELDS)
    if _event_hash(row, event.prev_hash) != event.hash:
        return False
    return not event.mac or signing.event_mac_matches(event.seq, event.hash, event.mac)


class _SealChecker:
    """Re-digests the rows under each seal as the verifier meets it, and checks that the sealed ranges
    follow one another from the chain's start.

    Sealed ranges tile the id space in chain order, so each table is read once, in id order, by one
    cursor that the seals consume in turn: one query per table however many seals there are.
    """

    def __init__(self, boundary: ArchiveBoundary | None) -> None:
        self.start = ids_before_boundary(boundary)
        self.next_after = dict(self.start)
        self.checked = 0
        self.rows: dict[str, Iterator[tuple[Any, ...]]] = {}
        self.peeked: dict[str, tuple[Any, ...] | None] = {}

    def _digest_next(self, table: str, after_id: int, last_id: int) -> SealedRange:
        model, fields = SEALED_TABLES[table]
        if table not in self.rows:
            self.rows[table] = (
                model._default_manager.filter(id__gt=self.start[table])
                .order_by("id")
                .values_list(*fields)
                .iterator(chunk_size=5000)
            )
            self.peeked[table] = next(self.rows[table], None)
        digest, count = hashlib.sha256(), 0
        while (row := self.peeked[table]) is not None and row[0] <= last_id:
            if row[0] > after_id:
                digest.update(canonical_row(fields, row))
                digest.update(b"\n")
                count += 1
            self.peeked[table] = next(self.rows[table], None)
        return SealedRange(after_id, last_id, count, digest.hexdigest())

    def check(self, seq: int, detail: dict[str, Any]) -> list[ChainBreak]:
        breaks = []
        for table in SEALED_TABLES:
            sealed = detail.get(table) or {}
            try:
                after_id, last_id = int(sealed["after_id"]), int(sealed["last_id"])
            except (KeyError, TypeError, ValueError):
                breaks.append(ChainBreak(seq, f"seal of {table} is malformed"))
                continue
            if after_id != self.next_after[table]:
                breaks.append(
                    ChainBreak(
                        seq, f"seal of {table} starts after #{after_id}, expected #{self.next_after[table]}"
                    )
                )
            if after_id < self.next_after[table]:  # overlaps what was read already: read it again
                actual = digest_range(table, after_id=after_id, last_id=last_id)
            else:
                actual = self._digest_next(table, after_id, last_id)
            for first, last in sealed.get("missing") or []:
                ids = f"#{first}" if first == last else f"#{first}-#{last}"
                breaks.append(
                    ChainBreak(
                        seq,
                        f"{table} {ids} missing when sealed: deleted before sealing (or never committed)",
                    )
                )
            if (actual.count, actual.sha256) != (sealed.get("count"), sealed.get("sha256")):
                breaks.append(
                    ChainBreak(
                        seq,
                        f"{table} #{after_id + 1}-#{last_id} do not match their seal ({actual.count} "
                        f"rows now, {sealed.get('count')} sealed): edited, deleted or inserted",
                    )
                )
            self.next_after[table] = last_id
        self.checked += 1
        return breaks

    def finish(self, verification: ChainVerification, first_seq: int) -> None:
        for table, (model, _) in SEALED_TABLES.items():
            below = model._default_manager.filter(id__lte=self.start[table]).count()
            if below:
                verification.breaks.append(
                    ChainBreak(first_seq, f"{below} {table} precede the first sealed range (inserted)")
                )
            unsealed = model._default_manager.filter(id__gt=self.next_after[table])
            verification.unsealed[table] = unsealed.count()
            oldest = unsealed.aggregate(
                t=Min("recorded_at" if table == "decision_records" else "received_at")
            )
            lag = timedelta(seconds=10 * settings.AUDIT_SEAL_INTERVAL_S + 60)
            if oldest["t"] is not None and oldest["t"] < verification.verified_at - lag:
                verification.warnings.append(
                    f"{table} unsealed since {oldest['t']:%Y-%m-%d %H:%M} UTC: is the sealing task running?"
                )


def _event_rows(chunk_size: int) -> Iterator[tuple[Any, ...]]:
    """Every event in chain order as EVENT_FIELDS and its MAC. On PostgreSQL the time arrives as the
    canonical ISO text, which spares parsing and re-printing a million timestamps."""
    events = AuditEvent.objects.order_by("seq")
    if connection.vendor != "postgresql":
        return events.values_list(*EVENT_FIELDS, "mac").iterator(chunk_size=chunk_size)
    iso = "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    fields = [f if f != "occurred_at" else "occurred_iso" for f in (*EVENT_FIELDS, "mac")]
    return (
        events.annotate(occurred_iso=RawSQL(iso, ()))  # noqa: S611 - a constant expression
        .values_list(*fields)
        .iterator(chunk_size=chunk_size)
    )


def _checkpoints(from_seq: int) -> Iterator[Checkpoint]:
    return Checkpoint.objects.filter(seq__gte=from_seq).order_by("seq").iterator(chunk_size=2000)


def _check_checkpoint(cp: Checkpoint, keys: dict[str, Any]) -> ChainBreak | None:
    message = checkpoint_message(seq=cp.seq, hash=cp.hash, signed_at=cp.signed_at)
    if not signing.verify(message, key_id=cp.key_id, signature=cp.signature, keys=keys):
        return ChainBreak(cp.seq, f"checkpoint at #{cp.seq} has an invalid signature (forged or unknown key)")
    return None


def verify_chain(*, chunk_size: int = 5000, expect: dict[int, str] | None = None) -> ChainVerification:
    """Verify the whole log (see the module docstring). Reads in constant memory.

    Reports breaks by the event they name; `first_break` is what `audit verify` prints. A chain break
    stops the walk (nothing after it can be trusted); seal and checkpoint failures are collected.
    `expect` maps seqs to hashes held outside the database (a checkpoint line from the logs, the
    `last_seq`/`last_hash` of an old manifest): each must still be in the chain, as must every
    checkpoint published to `AUDIT_CHECKPOINT_PATH`.
    """
    expect = dict(expect or {})
    keys = signing.verification_keys()
    result = ChainVerification(events_checked=0, breaks=[])
    if settings.AUDIT_CHECKPOINT_PATH and Path(settings.AUDIT_CHECKPOINT_PATH).exists():
        try:
            for seq, digest in read_published(Path(settings.AUDIT_CHECKPOINT_PATH)).items():
                expect.setdefault(seq, digest)
        except (PublishedCheckpointError, OSError) as exc:
            result.warnings.append(f"published checkpoints not used: {exc}")
    boundary = latest_boundary()
    prev_hash, expected_seq = GENESIS_HASH, 1
    if boundary is not None:
        prev_hash, expected_seq = boundary.prev_hash, boundary.first_seq
        result.first_seq = boundary.first_seq
        if not signing.verify(
            boundary_message(boundary), key_id=boundary.key_id, signature=boundary.signature, keys=keys
        ):
            result.breaks.append(ChainBreak(boundary.first_seq, "archive boundary has an invalid signature"))
            return result
    # Checkpoints of archived events can no longer be compared; their signatures still are.
    for cp in Checkpoint.objects.filter(seq__lt=expected_seq).iterator(chunk_size=2000):
        if (problem := _check_checkpoint(cp, keys)) is not None:
            result.breaks.append(problem)
        result.checkpoints_checked += 1

    seals = _SealChecker(boundary)
    checkpoints = _checkpoints(expected_seq)
    pending_cp = next(checkpoints, None)
    archive_event_seen = boundary is None
    # Events written before per-event MACs (migration 0007) have none; once one has, all later must.
    macs_seen, without_mac = False, 0
    for row in _event_rows(chunk_size):
        seq, action, detail, stored_prev, stored_hash, mac = row[0], row[5], *row[11:15]
        result.events_checked += 1
        if seq != expected_seq:
            result.breaks.append(ChainBreak(seq, f"expected event #{expected_seq}, found #{seq}"))
            return result
        if stored_prev != prev_hash:
            result.breaks.append(ChainBreak(seq, "does not link to the previous event"))
            return result
        if _event_hash(row, prev_hash) != stored_hash:
            result.breaks.append(ChainBreak(seq, "content does not match its hash (edited)"))
            return result
        if mac or macs_seen:
            macs_seen = True
            if not signing.event_mac_matches(seq, stored_hash, mac):
                result.breaks.append(
                    ChainBreak(seq, "does not match its MAC (changed and re-chained without Veil's key)")
                )
                return result
        else:
            without_mac = seq
        if seq in expect and expect.pop(seq) != stored_hash:
            result.breaks.append(ChainBreak(seq, "does not match the hash held outside the database"))
        while pending_cp is not None and pending_cp.seq == seq:
            if (problem := _check_checkpoint(pending_cp, keys)) is not None:
                result.breaks.append(problem)
            elif pending_cp.hash != stored_hash:
                result.breaks.append(
                    ChainBreak(seq, "does not match its signed checkpoint (chain rewritten)")
                )
            result.checkpoints_checked += 1
            pending_cp = next(checkpoints, None)
        if action == SEAL_ACTION:
            result.breaks.extend(seals.check(seq, detail))
        elif action == ARCHIVE_ACTION and boundary is not None:
            archive_event_seen = archive_event_seen or (
                detail.get("first_remaining_seq") == boundary.first_seq
                and detail.get("genesis_hash") == boundary.prev_hash
            )
        prev_hash, expected_seq = stored_hash, expected_seq + 1
    result.last_seq, result.last_hash = expected_seq - 1, prev_hash

    if pending_cp is not None:
        if _check_checkpoint(pending_cp, keys) is None:
            result.breaks.append(
                ChainBreak(
                    expected_seq,
                    f"missing: checkpoint signed {pending_cp.signed_at:%Y-%m-%d %H:%M:%S} UTC names event "
                    f"#{pending_cp.seq}, but the log ends at #{expected_seq - 1} (tail cut)",
                )
            )
        else:
            result.breaks.append(
                ChainBreak(pending_cp.seq, "checkpoint past the end has an invalid signature")
            )
        result.checkpoints_checked += 1
    for seq in sorted(expect):
        if seq >= expected_seq:
            result.breaks.append(
                ChainBreak(
                    seq,
                    f"missing: a hash held outside the database names it; "
                    f"the log ends at #{expected_seq - 1}",
                )
            )
    head = ChainHead.objects.filter(id=1).first()
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev_hash):
        result.breaks.append(ChainBreak(head.seq, "the log ends before the chain head (tail cut)"))
    if not archive_event_seen:
        result.breaks.append(ChainBreak(expected_seq, "no audit.archived event records the archive boundary"))
    seals.finish(result, result.first_seq)
    result.seals_checked = seals.checked
    if without_mac:
        result.warnings.append(
            f"events #{result.first_seq}-#{without_mac} predate per-event MACs: a rewrite there is "
            "found only up to the checkpoint after it"
        )
    _warn_about_stale_checkpoints(result)
    return result


def _warn_about_stale_checkpoints(result: ChainVerification) -> None:
    if result.last_seq == 0:
        return
    latest = Checkpoint.objects.order_by("-seq").first()
    if latest is None:
        result.warnings.append("no signed checkpoint yet: a cut tail would not be detected")
        return
    stale_after = timedelta(seconds=3 * settings.AUDIT_CHECKPOINT_INTERVAL_S)
    if latest.seq < result.last_seq and latest.signed_at < result.verified_at - stale_after:
        result.warnings.append(
            f"last checkpoint #{latest.seq} was signed {latest.signed_at:%Y-%m-%d %H:%M} UTC; "
            "is the checkpoint task running?"
        )


# --- single events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EventPosition:
    """An event with its neighbours in the chain and the checkpoint that covers it."""

    event: AuditEvent
    previous: AuditEvent | None
    next: AuditEvent | None
    content_matches: bool
    checkpoint: Checkpoint | None
    checkpoint_signature_ok: bool


def event_position(seq: int) -> EventPosition | None:
    event = AuditEvent.objects.filter(seq=seq).first()
    if event is None:
        return None
    checkpoint = Checkpoint.objects.filter(seq__gte=seq).order_by("seq").first()
    signature_ok = (
        checkpoint is not None and _check_checkpoint(checkpoint, signing.verification_keys()) is None
    )
    return EventPosition(
        event=event,
        previous=AuditEvent.objects.filter(seq=seq - 1).first(),
        next=AuditEvent.objects.filter(seq=seq + 1).first(),
        content_matches=event_content_matches(event),
        checkpoint=checkpoint,
        checkpoint_signature_ok=signature_ok,
    )


def latest_checkpoint() -> tuple[Checkpoint | None, bool]:
    """The most recent checkpoint and whether its signature checks (cheap, for the dashboard)."""
    checkpoint = Checkpoint.objects.order_by("-seq").first()
    if checkpoint is None:
        return None, False
    return checkpoint, _check_checkpoint(checkpoint, signing.verification_keys()) is None
