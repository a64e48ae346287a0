"""Coverage and drift checks over a policy snapshot. Pure: they ask the decision engine.

Coverage: every column classified at or above a level, or tagged sensitive, must be masked for an
*ordinary principal* (a user with no groups, roles, exemptions or grants), which is exactly what
the engine answers for anyone who has not been given an exception. With `require_rule`, being
masked only by the classification default (a full mask chosen because nothing else applied) does
not count: the column needs a rule or a semantic type that says how to mask it.

Unclassified: columns nobody classified, whose name suggests nothing and that no rule or semantic
type masks, are answered by their project's default for the environment (masked in production
unless a project says otherwise); the report lists them with that answer, without failing.

Drift: the same column (database, schema, table and column names) on instances of different
environments must get the same answer: masked in all or in none, with the same semantic type.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from masking.decisions.engine import CatalogColumn, ColumnKey, Decision, Policy, Principal

ORDINARY_PRINCIPAL = Principal(kind="user", id="veil:ordinary-principal", name="an ordinary principal")
DEFAULT_SENSITIVE_TAGS = ("sensitive", "pii")


@dataclass(frozen=True)
class Finding:
    column: CatalogColumn
    decision: Decision
    why: str

    def as_json(self) -> dict[str, object]:
        return {
            "column": self.column.key.label(),
            "environment": self.column.environment,
            "classification_level": self.column.classification_level,
            "tags": list(self.column.tags),
            "decision": self.decision.action,
            "reason": self.decision.reason_kind,
            "why": self.why,
        }


@dataclass(frozen=True)
class CoverageReport:
    uncovered: list[Finding]
    unreviewed: list[Finding]  # unclassified, but the name and type look sensitive
    unclassified: list[Finding] = field(default_factory=list)  # answered by the project's default

    @property
    def ok(self) -> bool:
        return not self.uncovered

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "uncovered": [f.as_json() for f in self.uncovered],
            "unreviewed": [f.as_json() for f in self.unreviewed],
            "unclassified": [f.as_json() for f in self.unclassified],
        }


def default_min_level(policy: Policy) -> int:
    """The level coverage holds columns to unless told otherwise: the one from which the policy
    masks classified columns by default (3 when classification alone masks nothing)."""
    return policy.mask_classified_from if policy.mask_classified_from is not None else 3


def coverage(
    policy: Policy,
    *,
    min_level: int,
    sensitive_tags: Iterable[str] = DEFAULT_SENSITIVE_TAGS,
    require_rule: bool = False,
    environments: Iterable[str] = (),
    now: float,
) -> CoverageReport:
    tags = set(sensitive_tags)
    envs = set(environments)
    uncovered, unreviewed, unclassified = [], [], []
    for column in _columns(policy, envs):
        decision = policy.decide(ORDINARY_PRINCIPAL, [column.key], now=now)[0]
        level = column.classification_level
        reasons = []
        if level is not None and level >= min_level:
            reasons.append(f"classified at level {level}")
        if tags & set(column.tags):
            reasons.append(f"tagged {', '.join(sorted(tags & set(column.tags)))}")
        if reasons:
            weak = require_rule and decision.reason_kind in ("classification", "unclassified")
            if decision.unmask or weak:
                what = f"only masked by the {decision.reason_kind} default" if weak else "not masked"
                uncovered.append(Finding(column, decision, f"{' and '.join(reasons)}, {what}"))
        elif level is None and column.suggested_level is not None and column.suggested_level >= min_level:
            unreviewed.append(
                Finding(
                    column,
                    decision,
                    f"unclassified; its name and type look like level {column.suggested_level}",
                )
            )
        elif level is None and decision.reason_kind in ("unclassified", "not_sensitive"):
            why = decision.reason_title if not decision.unmask else _in_clear_why(policy, column)
            unclassified.append(Finding(column, decision, why))
    return CoverageReport(uncovered, unreviewed, unclassified)


def _in_clear_why(policy: Policy, column: CatalogColumn) -> str:
    _, why = policy.unclassified.masks(column.project, column.environment)
    return f"not classified; in clear by {why}"


@dataclass(frozen=True)
class DriftEntry:
    column: CatalogColumn
    decision: Decision

    @property
    def signature(self) -> tuple[bool, str | None]:
        return (not self.decision.unmask, self.decision.semantic_type)

    def describe(self) -> str:
        if self.decision.unmask:
            return "not masked"
        return f"masked ({self.decision.semantic_type or 'full mask by default'})"

    def as_json(self) -> dict[str, object]:
        return {
            "instance": self.column.key.instance,
            "environment": self.column.environment,
            "masked": not self.decision.unmask,
            "semantic_type": self.decision.semantic_type,
            "reason": self.decision.reason_kind,
            "classification_level": self.column.classification_level,
        }


@dataclass(frozen=True)
class Drift:
    label: str  # database/schema.table.column
    entries: list[DriftEntry]

    def describe(self) -> str:
        return "; ".join(
            f"{e.describe()} in {e.column.environment} ({e.column.key.instance})" for e in self.entries
        )

    def as_json(self) -> dict[str, object]:
        return {"column": self.label, "instances": [e.as_json() for e in self.entries]}


def drift(policy: Policy, *, environments: Iterable[str] = (), now: float) -> list[Drift]:
    """Columns whose answer for an ordinary principal differs between environments."""
    groups: dict[tuple[str, str, str, str], list[CatalogColumn]] = defaultdict(list)
    for column in _columns(policy, set(environments)):
        key = column.key
        groups[(key.database, key.schema, key.table, key.column)].append(column)
    found = []
    for (database, schema, table, name), columns in sorted(groups.items()):
        if len({c.environment for c in columns}) < 2:
            continue
        entries = [
            DriftEntry(c, policy.decide(ORDINARY_PRINCIPAL, [c.key], now=now)[0])
            for c in sorted(columns, key=lambda c: (c.environment, c.key.instance))
        ]
        if len({e.signature for e in entries}) > 1:
            label = f"{database}/{schema + '.' if schema else ''}{table}.{name}"
            found.append(Drift(label, entries))
    return found


def _columns(policy: Policy, environments: set[str]) -> list[CatalogColumn]:
    columns = sorted(policy.columns.values(), key=lambda c: _order(c.key))
    return [c for c in columns if not environments or c.environment in environments]


def _order(key: ColumnKey) -> tuple[str, ...]:
    return (key.instance, key.database, key.schema, key.table, key.column)
