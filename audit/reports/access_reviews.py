"""Access reviews: each campaign opened in the period, every item it reviewed, and its outcome.

Rebuilt from the log alone (the conventions of docs/audit.md): `access_review.campaign_opened`
holds the campaign's population (`detail.items`, each with its `item` id, member, access, reviewer,
last unmask and whether it was proposed for removal); later events name the campaign in
`detail.campaign` and the item in `detail.item` (`access_review.item_kept`, `.item_removed`) or
list escalated items (`access_review.items_escalated`). Answers after the period still count: the
outcome of a campaign opened in the period is what auditors ask for (SOC 2 CC6.2, CC6.3).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from audit.filters import AuditFilter, AuditScope, events_matching
from audit.models import AuditEvent
from audit.reports.common import CHUNK, Row, parse_time

ACCESS_REVIEW_COLUMNS = (
    "campaign",
    "project",
    "opened_at",
    "deadline",
    "item",
    "member",
    "access",
    "reviewer",
    "last_unmask",
    "proposed_removal",
    "outcome",
    "decided_at",
    "decided_by",
    "channel",
    "note",
)
CAMPAIGN_SUMMARY_COLUMNS = (
    "campaign",
    "project",
    "opened_at",
    "deadline",
    "items",
    "kept",
    "removed",
    "removed_at_deadline",
    "escalated",
    "pending",
    "proposed_removal",
)
_OPENED = "access_review.campaign_opened"
_ANSWERS = ("access_review.item_kept", "access_review.item_removed")
_ESCALATED = "access_review.items_escalated"


def access_review_rows(flt: AuditFilter, scope: AuditScope) -> Iterator[Row]:
    """One row per item of each campaign opened in the period, in the campaigns' order."""
    opened = list(
        events_matching(replace(flt, action="", person=""), scope)
        .filter(action=_OPENED)
        .order_by("seq")
        .values("seq", "project", "occurred_at", "detail")
    )
    refs = [str((event["detail"] or {}).get("campaign") or "") for event in opened]
    outcomes = _outcomes([ref for ref in refs if ref])
    for event, ref in zip(opened, refs, strict=True):
        detail = event["detail"] if isinstance(event["detail"], dict) else {}
        for item in detail.get("items") or []:
            key = (ref, str(item.get("item")))
            outcome = outcomes.get(key, {})
            if flt.person and not _mentions(flt.person, item, outcome):
                continue
            yield (
                ref,
                event["project"],
                event["occurred_at"],
                parse_time(detail.get("deadline")),
                item.get("item"),
                item.get("member") or "",
                item.get("access") or "",
                item.get("reviewer") or "",
                parse_time(item.get("last_unmask")),
                bool(item.get("proposed_removal")),
                outcome.get("outcome", "pending"),
                outcome.get("decided_at"),
                outcome.get("decided_by", ""),
                outcome.get("channel", ""),
                outcome.get("note", ""),
            )


def campaign_summary(flt: AuditFilter, scope: AuditScope) -> Iterator[Row]:
    """One row per campaign: how many items it had and how each ended (for the PDF summary)."""
    current: list[Any] | None = None
    counts: Counter[str] = Counter()
    for row in access_review_rows(replace(flt, person=""), scope):
        if current is None or current[0] != row[0]:
            if current is not None:
                yield _summary_row(current, counts)
            current, counts = list(row[:4]), Counter()
        counts["items"] += 1
        counts[row[10]] += 1
        counts["proposed"] += row[9]
    if current is not None:
        yield _summary_row(current, counts)


def _summary_row(campaign: list[Any], counts: Counter[str]) -> Row:
    return (
        *campaign,
        counts["items"],
        counts["kept"],
        counts["removed"],
        counts["removed at the deadline"],
        counts["escalated, unanswered"],
        counts["pending"],
        counts["proposed"],
    )


def _outcomes(refs: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """The last word on each item of these campaigns: an answer, else its escalation."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    if not refs:
        return found
    events = (
        AuditEvent.objects.filter(action__in=[*_ANSWERS, _ESCALATED], detail__campaign__in=refs)
        .order_by("seq")
        .values("action", "actor_name", "occurred_at", "channel", "detail")
    )
    for event in events.iterator(chunk_size=CHUNK):
        detail = event["detail"] if isinstance(event["detail"], dict) else {}
        ref = str(detail.get("campaign"))
        if event["action"] == _ESCALATED:
            for item_id in detail.get("items") or []:
                found.setdefault((ref, str(item_id)), {"outcome": "escalated, unanswered"})
            continue
        removed = event["action"] == "access_review.item_removed"
        outcome = "removed at the deadline" if detail.get("deadline") else ("removed" if removed else "kept")
        found[(ref, str(detail.get("item")))] = {
            "outcome": outcome,
            "decided_at": event["occurred_at"],
            "decided_by": event["actor_name"],
            "channel": event["channel"],
            "note": str(detail.get("note") or ""),
        }
    return found


def _mentions(person: str, item: dict[str, Any], outcome: dict[str, Any]) -> bool:
    wanted = person.lower()
    said = (item.get("member"), item.get("reviewer"), outcome.get("decided_by"))
    return any(wanted in str(value or "").lower() for value in said)
