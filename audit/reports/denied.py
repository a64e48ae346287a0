"""Denied and unauthorized attempts."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Q

from audit.filters import AuditFilter, AuditScope, events_matching
from audit.reports.common import CHUNK, Row

DENIED_ACTIONS = (
    "request.denied",
    "auth.sign_in_failed",
    "slack.forged_request",
    "query.guard_audited",
)
DENIED_SUFFIXES = (".denied", ".rejected", ".refused", ".unauthorized", "_failed", ".forged_request")


DENIED_COLUMNS = (
    "seq",
    "occurred_at",
    "action",
    "actor_type",
    "actor_id",
    "actor_name",
    "target_repr",
    "project",
    "channel",
    "detail",
)


def denied_q() -> Q:
    q = Q(action__in=DENIED_ACTIONS)
    for suffix in DENIED_SUFFIXES:
        q |= Q(action__endswith=suffix)
    return q


def denied_rows(flt: AuditFilter, scope: AuditScope) -> Iterator[Row]:
    """Refused requests, failed sign-ins, forged Slack requests and any other `*.denied`-like event.
    (Plain HTTP 401/403 answers are not audit events and do not appear.)"""
    return (
        events_matching(flt, scope).filter(denied_q()).values_list(*DENIED_COLUMNS).iterator(chunk_size=CHUNK)
    )
