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


def policy_rows(flt: AuditFilter, scope: AuditScope) -> Iterator[Row]:
    """Changes to rules, semantic types, exemptions and column classifications, with before/after."""
    events = events_matching(flt, scope).filter(POLICY_Q)
    for seq, at, action, actor, t_type, t_id, t_repr, project, detail in events.values_list(
        "seq",
        "occurred_at",
        "action",
        "actor_name",
        "target_type",
        "target_id",
        "target_repr",
        "project",
        "detail",
    ).iterator(chunk_size=CHUNK):
        detail = detail if isinstance(detail, dict) else {}
        rest = {k: v for k, v in detail.items() if k not in ("before", "after")}
        yield (
            seq,
            at,
            action,
            actor,
            t_type,
            t_id,
            t_repr,
            project,
            detail.get("before"),
            detail.get("after"),
            rest,
        )
