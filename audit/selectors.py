"""Reads of the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from audit.chain import GENESIS_HASH, canonical_event, chain_hash
from audit.models import AuditEvent, ChainHead


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


@dataclass(frozen=True)
class ChainVerification:
    events_checked: int
    breaks: list[ChainBreak]

    @property
    def ok(self) -> bool:
        return not self.breaks


def _events_in_order(batch_size: int = 5000) -> Iterator[AuditEvent]:
    return AuditEvent.objects.order_by("seq").iterator(chunk_size=batch_size)


def verify_chain() -> ChainVerification:
    """Recompute every hash from the stored fields and check each link and the head.

    Reports the first event where the chain breaks (an edited, deleted or inserted row) and any
    mismatch between the last event and the chain head.
    """
    breaks: list[ChainBreak] = []
    prev_hash, expected_seq, checked = GENESIS_HASH, 1, 0
    for event in _events_in_order():
        checked += 1
        if event.seq != expected_seq:
            breaks.append(ChainBreak(event.seq, f"expected event #{expected_seq}, found #{event.seq}"))
            break
        if event.prev_hash != prev_hash:
            breaks.append(ChainBreak(event.seq, "does not link to the previous event"))
            break
        digest = chain_hash(
            prev_hash,
            canonical_event(
                seq=event.seq,
                occurred_at=event.occurred_at,
                actor_type=event.actor_type,
                actor_id=event.actor_id,
                actor_name=event.actor_name,
                action=event.action,
                target_type=event.target_type,
                target_id=event.target_id,
                target_repr=event.target_repr,
                project=event.project,
                channel=event.channel,
                detail=event.detail,
            ),
        )
        if digest != event.hash:
            breaks.append(ChainBreak(event.seq, "content does not match its hash (edited)"))
            break
        prev_hash, expected_seq = event.hash, expected_seq + 1
    if not breaks:
        head = ChainHead.objects.filter(id=1).first()
        if head is not None and (head.seq != expected_seq - 1 or head.hash != prev_hash):
            breaks.append(ChainBreak(head.seq, "the log ends before the chain head (tail cut)"))
    return ChainVerification(events_checked=checked, breaks=breaks)
