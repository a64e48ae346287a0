"""Grants and exemptions in force at a moment, replayed from their events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Q
from django.utils import timezone

from audit.filters import AuditFilter, AuditScope, report_action
from audit.models import AuditEvent
from audit.reports.common import CHUNK, Row, current_state, parse_time, ref_key, request_key

ENDING_VERBS = ("revoked", "expired", "deleted")
REQUEST_ENDING_VERBS = ("revoked", "relinquished", "expired")


IN_FORCE_COLUMNS = (
    "kind",
    "id",
    "project",
    "principal",
    "members",
    "condition",
    "reason",
    "request",
    "created_at",
    "created_by",
    "expires_at",
)


def in_force_rows(flt: AuditFilter, scope: AuditScope) -> Iterator[Row]:
    """Grants and exemptions in force at `flt.moment` (default now), replayed from their events:
    created/updated start or change one, revoked/expired/deleted end it, and its recorded
    `expires_at` ends it too; a grant with a `starts_at` is not in force before it."""
    at = flt.moment or timezone.now()
    events = (
        AuditEvent.objects.filter(
            Q(action__startswith="grant.")
            | Q(action__startswith="exemption.")
            | Q(action__in=[f"request.{verb}" for verb in REQUEST_ENDING_VERBS])
        )
        .filter(scope.events_q(), occurred_at__lt=at)
        .order_by("seq")
        .values(
            "action",
            "target_type",
            "target_id",
            "target_repr",
            "project",
            "occurred_at",
            "actor_name",
            "detail",
        )
    )
    state: dict[str, dict[str, Any]] = {}
    grant_of_request: dict[str, str] = {}
    for event in events.iterator(chunk_size=CHUNK):
        kind, _, verb = event["action"].partition(".")
        if kind == "request" or event["target_type"] == "request":
            # A grant ended through its request (`grant.expired` and `request.revoked` name the request).
            key = grant_of_request.get(request_key(event), "")
        else:
            key = f"{kind}:{event['target_id']}"
        if verb in ENDING_VERBS or kind == "request":
            state.pop(key, None)
        elif verb in ("created", "updated"):
            previous = state.get(key, {})
            state[key] = {
                **event,
                "detail": current_state(event["detail"]),
                "kind": kind,
                "created": previous.get("created", event),
            }
            if kind == "grant" and (event["detail"] or {}).get("request"):
                grant_of_request[ref_key(event["detail"]["request"])] = key
    kind_filter = report_action(flt, "in_force")
    for item in state.values():
        detail = item["detail"] or {}
        expires = parse_time(detail.get("expires_at"))
        if (expires is not None and expires <= at) or parse_time(detail.get("revoked_at")):
            continue
        starts = parse_time(detail.get("starts_at"))  # an extension starts when its grant ends
        if starts is not None and starts > at:
            continue
        members = detail.get("members") or {}
        principal = str(detail.get("principal") or "")
        condition = str(detail.get("condition") or "")
        people_text = " ".join([principal, item["created"]["actor_name"], *members.get("users", [])]).lower()
        if flt.project and item["project"] != flt.project:
            continue
        if kind_filter and item["kind"] != kind_filter:
            continue
        if flt.person and flt.person.lower() not in people_text:
            continue
        if flt.role and flt.role not in members.get("roles", []):
            continue
        if any(v and v.lower() not in condition.lower() for v in (flt.instance, flt.database, flt.column)):
            continue
        yield (
            item["kind"],
            item["target_id"],
            item["project"],
            principal,
            members,
            condition,
            item["target_repr"] if item["kind"] == "exemption" else "",
            str(detail.get("request") or ""),
            item["created"]["occurred_at"],
            item["created"]["actor_name"],
            expires,
        )
