"""Policy change history: every change to what gets masked, who may unmask and how access is approved,
with before/after.

That is the masking rules, semantic types and column classifications; the roles (their members decide
whom exemptions cover and who approves); exemptions; approval policies and their order; a project's
policy settings (the two-person rule) and where its approval requests are announced in Slack; and the
policy versions and two-person approvals (`policy_change.*`) that these changes went through.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Q

from audit.filters import AuditFilter, AuditScope, events_matching
from audit.reports.common import CHUNK, Row

POLICY_PREFIXES = (
    "rule.",
    "semantic_type.",
    "role.",
    "exemption.",
    "approval_policy.",
    "policy_change.",
)
POLICY_ACTIONS = (
    "catalog.classification_changed",
    "project.policy_settings_updated",
    "project.access_settings_updated",
    "slack.route_changed",
    "policy.version_created",
)


POLICY_Q = Q(action__in=POLICY_ACTIONS)
for _prefix in POLICY_PREFIXES:
    POLICY_Q |= Q(action__startswith=_prefix)


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
    """The policy changes (see the module docstring) in chain order, with before/after split out."""
    events = events_matching(flt, scope).filter(POLICY_Q)
    for *event_fields, detail in events.values_list(*_EVENT_FIELDS).iterator(chunk_size=CHUNK):
        detail = detail if isinstance(detail, dict) else {}
        rest = {k: v for k, v in detail.items() if k not in ("before", "after")}
        yield (*event_fields, detail.get("before"), detail.get("after"), rest)
