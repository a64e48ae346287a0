"""What the policy does to the catalog and how it is used: matching columns, dead rules, idle exemptions.

Reads the decision path's snapshot (`decision_caches`), so evaluating a condition as an admin types
costs CEL evaluations only, never a catalog query.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from masking.decisions import cel
from masking.decisions.engine import CatalogColumn, Policy, RuleView
from masking.models import Exemption, ExemptionKind
from masking.selectors import decision_caches, read_epochs


def live_policy() -> Policy:
    return decision_caches.policy(read_epochs())


@dataclass(frozen=True)
class ColumnMatch:
    column: CatalogColumn
    taken_by: str  # title of an earlier rule that masks it first, or ""

    def as_json(self) -> dict[str, str]:
        return {
            "column": self.column.key.label(),
            "environment": self.column.environment,
            "taken_by": self.taken_by,
        }


def columns_matching(
    condition: str, *, earlier_rules: list[RuleView] | None = None, projects: Collection[str] | None = None
) -> list[ColumnMatch]:
    """Catalog columns a (checked) condition matches; with `earlier_rules`, which of them a rule
    before it takes first (first match wins). Only columns of `projects`, unless it is None."""
    policy = live_policy()
    matches = []
    for column in sorted(policy.columns.values(), key=lambda c: c.key):
        if projects is not None and column.project not in projects:
            continue
        resource = column.resource()
        if not _matches(condition, resource):
            continue
        taken = next((r.title for r in earlier_rules or () if _matches(r.condition, resource)), "")
        matches.append(ColumnMatch(column, taken))
    return matches


def _matches(condition: str, resource: dict[str, object]) -> bool:
    try:
        return cel.evaluate(condition, resource)
    except Exception:  # a runtime error matches nothing, as on the decision path
        return False


@dataclass(frozen=True)
class RuleUsage:
    rule: RuleView
    matches: int
    wins: int
    problem: str = ""  # why its condition cannot be evaluated (`cel.condition_problem`)

    @property
    def status(self) -> str:
        if self.problem:
            return f"fails closed, masking in full every column it reaches: the condition {self.problem}"
        if not self.matches:
            return "matches no column"
        if not self.wins:
            return "every column it matches is taken by an earlier rule"
        return ""


def rule_usage(policy: Policy | None = None) -> list[RuleUsage]:
    """For each enabled rule: how many catalog columns it matches and how many it decides. A rule
    whose condition cannot be evaluated (over a cost limit, say) matches every column it reaches,
    as on the decision path, which masks them in full."""
    policy = policy or live_policy()
    counts = {rule.id: [0, 0] for rule in policy.rules}  # matches, wins
    problems = {rule.id: cel.condition_problem(rule.condition) or "" for rule in policy.rules}
    for column in policy.columns.values():
        resource = column.resource()
        decided = False
        for rule in policy.rules:
            if problems[rule.id] or _matches(rule.condition, resource):
                counts[rule.id][0] += 1
                if not decided:
                    counts[rule.id][1] += 1
                    decided = True
    return [
        RuleUsage(rule, matches=counts[rule.id][0], wins=counts[rule.id][1], problem=problems[rule.id])
        for rule in policy.rules
    ]


def exemptions_never_used(since: datetime) -> list[Exemption]:
    """Live standing exemptions that no recorded unmask decision cited since `since`."""
    from audit.models import DecisionRecord

    used: set[int] = set()
    records = DecisionRecord.objects.filter(recorded_at__gte=since).values_list("unmasked", flat=True)
    for unmasked in records.iterator(chunk_size=2000):
        used.update(entry.get("id") for entry in unmasked if entry.get("reason") == "exemption")
    return list(
        Exemption.objects.filter(kind=ExemptionKind.EXEMPTION, revoked_at__isnull=True)
        .exclude(pk__in=used)
        .select_related("project")
        .order_by("created_at")
    )
