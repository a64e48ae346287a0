"""Break-glass uses and whether each has been reviewed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from django.db.models import Q
from django.utils import timezone

from audit.filters import AuditFilter, AuditScope, events_matching, report_action
from audit.models import AuditEvent
from audit.reports.common import CHUNK, Row, duration_text

BREAKGLASS_COLUMNS = (
    "breakglass",
    "opened_at",
    "person",
    "project",
    "reason",
    "status",
    "reviewed_at",
    "reviewer",
    "outcome",
    "age",
)


def _is_review(action: str) -> bool:
    return action.endswith(".reviewed") or action.startswith("breakglass.review")


def _breakglass_key(event: Mapping[str, Any]) -> str:
    detail = event["detail"] if isinstance(event["detail"], dict) else {}
    return str(
        detail.get("breakglass") or detail.get("request") or event["target_id"] or f"event-{event['seq']}"
    )


def breakglass_rows(flt: AuditFilter, scope: AuditScope) -> Iterator[Row]:
    """Each break-glass use opened in the period, and whether someone has reviewed it since."""
    opened = (
        events_matching(replace(flt, action=""), scope)
        .filter(action__startswith="breakglass.")
        .values("seq", "action", "target_id", "actor_name", "project", "occurred_at", "detail")
    )
    cases: dict[str, dict[str, Any]] = {}
    for event in opened.iterator(chunk_size=CHUNK):
        if not _is_review(event["action"]):
            cases.setdefault(_breakglass_key(event), dict(event))
    reviews: dict[str, dict[str, Any]] = {}
    if cases:
        review_events = (
            AuditEvent.objects.filter(action__startswith="breakglass.")
            .filter(
                Q(target_id__in=list(cases))
                | Q(detail__breakglass__in=list(cases))
                | Q(detail__request__in=list(cases))
            )
            .order_by("seq")
            .values("seq", "action", "target_id", "actor_name", "occurred_at", "detail")
        )
        for review_event in review_events:
            if _is_review(review_event["action"]):
                reviews[_breakglass_key(review_event)] = dict(review_event)
    now = timezone.now()
    wanted_status = report_action(flt, "breakglass")
    for key, case in cases.items():
        review = reviews.get(key)
        detail = case["detail"] if isinstance(case["detail"], dict) else {}
        review_detail = (review or {}).get("detail") or {}
        status = "reviewed" if review else "pending review"
        if wanted_status in ("pending", "reviewed") and not status.startswith(wanted_status):
            continue
        yield (
            key,
            case["occurred_at"],
            case["actor_name"],
            case["project"],
            str(detail.get("reason") or ""),
            status,
            review["occurred_at"] if review else None,
            review["actor_name"] if review else "",
            str(review_detail.get("outcome") or review_detail.get("notes") or ""),
            "" if review else duration_text(case["occurred_at"], now),
        )
