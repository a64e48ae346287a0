"""Policy change history: rules, semantic types, exemptions and classifications, with before/after."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Q

from audit.filters import AuditFilter, AuditScope, events_matching
from audit.reports.common import CHUNK, Row

POLICY_Q = (
    Q(action__startswith="rule.")
    | Q(action__startswith="semantic_type.")
    | Q(action__startswith="exemption.")
    | Q(action="catalog.classification_changed")
)


POLICY_COLUMNS = (
    "seq",
    "occurred_at",
    "action",
    "actor_name",
    "target_type",
    "target_id",
    "target_repr",
    "project",
    "before",
    "after",
    "detail",
)
# Read per event: the leading columns, then the detail that is split into before, after and the rest.
_EVENT_FIELDS = (*POLICY_COLUMNS[:-3], "detail")


def policy_rows(flt: AuditFilter, scope: AuditScope) -> Iterator[Row]:
    """Changes to rules, semantic types, exemptions and column classifications, with before/after."""
    events = events_matching(flt, scope).filter(POLICY_Q)
    for *event_fields, detail in events.values_list(*_EVENT_FIELDS).iterator(chunk_size=CHUNK):
        detail = detail if isinstance(detail, dict) else {}
        rest = {k: v for k, v in detail.items() if k not in ("before", "after")}
        yield (*event_fields, detail.get("before"), detail.get("after"), rest)
