"""Retention: the one audited path by which old events leave the database.

`archive_before` never edits a row. It refuses unless the log verifies and the cut-off is older
than `settings.AUDIT_RETENTION_DAYS`; writes the events to be removed (and the decision records and
access events under their seals) to signed JSON Lines exports; then, in one transaction holding the
chain head, removes exactly those rows past the append-only triggers (`pgtrigger.ignore`), stores a
signed `ArchiveBoundary` (the first remaining seq and the hash it links to) and appends
`audit.archived`. `audit verify` then starts from that boundary, and the archive files can be checked
on their own: their first event links to the previous boundary's hash (or the genesis hash).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pgtrigger
from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from audit import signing
from audit.chain import GENESIS_HASH
from audit.exports import ExportResult, Progress, write_export
from audit.filters import EVERYTHING, AuditFilter
from audit.models import AccessEvent, ArchiveBoundary, AuditEvent, ChainHead, DecisionRecord, ExportFormat
from audit.reports import EVENT_COLUMNS
from audit.selectors import (
    ARCHIVE_ACTION,
    SEALED_TABLES,
    boundary_message,
    ids_before_boundary,
    last_sealed_ids,
    latest_boundary,
    verify_chain,
)
from audit.services import Actor, record_event

IGNORED_TRIGGERS = (
    "audit.AuditEvent:audit_no_update_delete",
    "audit.DecisionRecord:decisionrecord_append_only",
    "audit.AccessEvent:accessevent_append_only",
)


class ArchiveError(ValueError):
    """An archive refused before anything was removed."""


@dataclass(frozen=True)
class ArchiveResult:
    boundary: ArchiveBoundary
    events_export: ExportResult
    rows_export: ExportResult
    events_removed: int
    decision_records_removed: int
    access_events_removed: int


def _sealed_rows(after: dict[str, int], last: dict[str, int]) -> Iterator[tuple]:
    """Each sealed table's rows with after < id <= last, as (table, row) in table then id order."""
    for table, (model, fields) in SEALED_TABLES.items():
        rows = (
            model._default_manager.filter(id__gt=after[table], id__lte=last[table])
            .order_by("id")
            .values_list(*fields)
        )
        for values in rows.iterator(chunk_size=2000):
            yield table, dict(zip(fields, values, strict=True))


def archive_before(
    *,
    before: datetime,
    out_dir: Path,
    actor: Actor,
    channel: str,
    progress: Progress | None = None,
) -> ArchiveResult:
    """Archive and remove the events that occurred before `before` (see the module docstring)."""
    now = timezone.now()
    before = before.astimezone(UTC)  # signed as ISO text: one representation only
    newest_allowed = now - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    if before > newest_allowed:
        raise ArchiveError(
            f"retention is {settings.AUDIT_RETENTION_DAYS} days: only events before "
            f"{newest_allowed:%Y-%m-%d} may be archived"
        )
    verification = verify_chain()
    if not verification.ok:
        raise ArchiveError(f"refusing to archive a log that does not verify: {verification.summary()}")
    boundary = latest_boundary()
    start, start_hash = (boundary.first_seq, boundary.prev_hash) if boundary else (1, GENESIS_HASH)
    head = ChainHead.objects.get(id=1)
    first_kept = AuditEvent.objects.filter(occurred_at__gte=before).aggregate(s=Min("seq"))["s"]
    cut = first_kept if first_kept is not None else head.seq + 1
    if cut <= start:
        raise ArchiveError(f"no events before {before:%Y-%m-%d} to archive")
    genesis_hash = AuditEvent.objects.values_list("hash", flat=True).get(seq=cut - 1)
    after = ids_before_boundary(boundary)
    last = last_sealed_ids(before_seq=cut)

    stamp = f"{before:%Y%m%d}-{now:%Y%m%dT%H%M%SZ}"
    chain_range = {
        "first_seq": start,
        "prev_hash": start_hash,
        "last_seq": cut - 1,
        "last_hash": genesis_hash,
    }
    events_export = write_export(
        report="events",
        fmt=ExportFormat.JSONL,
        flt=AuditFilter(date_to=before),
        scope=EVERYTHING,
        out_path=out_dir / f"veil-audit-archive-{stamp}-events.jsonl",
        actor=actor,
        channel=channel,
        progress=progress,
        verification=verification,
        extra={"archive": chain_range},
        source=(
            EVENT_COLUMNS,
            AuditEvent.objects.filter(seq__lt=cut)
            .order_by("seq")
            .values_list(*EVENT_COLUMNS)
            .iterator(chunk_size=5000),
        ),
    )
    sealed = {t: {"after_id": after[t], "last_id": last[t]} for t in after}
    rows_export = write_export(
        report="sealed_rows",
        fmt=ExportFormat.JSONL,
        flt=AuditFilter(date_to=before),
        scope=EVERYTHING,
        out_path=out_dir / f"veil-audit-archive-{stamp}-decisions.jsonl",
        actor=actor,
        channel=channel,
        verification=verification,
        extra={"archive": {"sealed_rows": sealed}},
        source=(
            ("table", "row"),
            _sealed_rows(after, last),
        ),
    )
    with transaction.atomic():
        ChainHead.objects.select_for_update().get(id=1)
        if not AuditEvent.objects.filter(seq=cut - 1, hash=genesis_hash).exists() or (
            latest_boundary() != boundary
        ):
            raise ArchiveError("the log changed while the archive was written; nothing removed, run it again")
        with pgtrigger.ignore(*IGNORED_TRIGGERS):
            events_removed, _ = AuditEvent.objects.filter(seq__lt=cut).delete()
            decisions_removed, _ = DecisionRecord.objects.filter(id__lte=last["decision_records"]).delete()
            access_removed, _ = AccessEvent.objects.filter(id__lte=last["access_events"]).delete()
        new_boundary = ArchiveBoundary(
            first_seq=cut,
            prev_hash=genesis_hash,
            decisions_after_id=last["decision_records"],
            access_events_after_id=last["access_events"],
            archived_before=before,
            archived_at=now,
            export_sha256=events_export.sha256,
        )
        new_boundary.key_id, new_boundary.signature = signing.sign(boundary_message(new_boundary))
        new_boundary.save()
        record_event(
            action=ARCHIVE_ACTION,
            actor=actor,
            channel=channel,
            detail={
                "first_remaining_seq": cut,
                "genesis_hash": genesis_hash,
                "archived_before": before,
                "previous_first_seq": start,
                "events_removed": events_removed,
                "decision_records_removed": decisions_removed,
                "access_events_removed": access_removed,
                "exports": {
                    events_export.path.name: events_export.sha256,
                    rows_export.path.name: rows_export.sha256,
                },
            },
        )
    return ArchiveResult(
        new_boundary, events_export, rows_export, events_removed, decisions_removed, access_removed
    )
