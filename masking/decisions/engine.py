"""The decision engine: mask or unmask, per column, for one principal. Pure: no ORM, no settings.

`Policy` is an immutable snapshot of rules, semantic types, exemptions and the catalog, built by
`masking.selectors.load_policy` and reused until the policy epoch moves. Evaluating CEL is the
expensive part, so every (condition, column) answer is memoised on the snapshot, and each
principal gets a table of finished decisions: a warm decision is two dictionary lookups and a
comparison with the clock.

Precedence: exemption or grant > rule (first match wins) > the column's own semantic type >
classification default (a column classified at or above `mask_classified_from`, or unclassified
but suggested at that level, with nothing else masking it is masked in full) > the default for
unclassified columns of the project and environment (`UnclassifiedDefaults`) > not sensitive.
Any doubt is a mask: an unknown column, an unknown principal, a rule whose condition fails to
evaluate.

Time is passed in (`now`, seconds since the epoch), so expiry is exact to the instant the caller
asks about and tests can freeze it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from veil_sdk import algorithms

from masking.decisions import cel

logger = logging.getLogger(__name__)

# The SDK's full mask, carried by every fail-closed answer: a plain dict, as orjson encodes answers.
FULL_ALGORITHM: dict[str, Any] = dict(algorithms.FULL_ALGORITHM)
_NEVER = math.inf


class ColumnKey(NamedTuple):
    instance: str
    database: str
    schema: str
    table: str
    column: str

    def label(self) -> str:
        schema = f"{self.schema}." if self.schema else ""
        return f"{self.instance}/{self.database}/{schema}{self.table}.{self.column}"


@dataclass(frozen=True, slots=True)
class CatalogColumn:
    key: ColumnKey
    project: str
    environment: str
    classification_level: int | None
    tags: tuple[str, ...]
    semantic_type: str | None
    suggested_level: int | None = None

    def resource(self) -> dict[str, Any]:
        """The CEL `resource` variable for this column, with Bytebase's names."""
        level = self.classification_level
        return {
            "environment_id": self.environment,
            "project_id": self.project,
            "instance_id": self.key.instance,
            "database_name": self.key.database,
            "schema_name": self.key.schema,
            "table_name": self.key.table,
            "column_name": self.key.column,
            "classification_level": "" if level is None else str(level),
            "tags": list(self.tags),
        }


@dataclass(frozen=True, slots=True)
class SemanticTypeView:
    key: str
    title: str
    algorithm: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RuleView:
    id: int
    title: str
    condition: str
    semantic_type: str


@dataclass(frozen=True, slots=True)
class ExemptionView:
    """A standing exemption (members) or a grant (one principal); times in epoch seconds. A grant
    extending another has a `starts_at` and is not honoured before it."""

    id: int
    kind: str
    project: str
    condition: str
    expires_at: float | None
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    service_accounts: frozenset[str] = frozenset()
    request_ref: str = ""
    starts_at: float | None = None

    def covers(self, principal: Principal) -> bool:
        if principal.kind == "user":
            return (
                principal.id in self.users
                or not self.groups.isdisjoint(principal.groups)
                or not self.roles.isdisjoint(principal.roles)
            )
        return principal.id in self.service_accounts or not self.roles.isdisjoint(principal.roles)


@dataclass(frozen=True, slots=True)
class ProjectUnclassified:
    """One project's answer for columns nobody classified: True masks, False leaves in clear, None
    defers to Veil's default. `environments` overrides `default` per environment."""

    default: bool | None = None
    environments: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UnclassifiedDefaults:
    """How a column nobody classified (and whose name suggests nothing) is answered when no rule
    or semantic type masks it. Nobody having looked at a column is itself a doubt, so in production
    (`masked_environments`) it is masked unless a project says otherwise; elsewhere it is in clear
    unless a project says otherwise. Read once per column per snapshot, never per request."""

    masked_environments: frozenset[str] = frozenset({"prod", "production"})
    projects: Mapping[str, ProjectUnclassified] = field(default_factory=dict)

    def masks(self, project: str, environment: str) -> tuple[bool, str]:
        """Whether to mask the project's unclassified columns in the environment, and why."""
        setting = self.projects.get(project)
        if setting is not None:
            override = setting.environments.get(environment)
            if override is not None:
                return override, f"{project}'s setting for {environment}"
            if setting.default is not None:
                return setting.default, f"{project}'s setting"
        return environment in self.masked_environments, f"Veil's default for {environment}"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who the data is for. `id` is the user's primary key or the service account's name."""

    kind: str
    id: str
    name: str
    groups: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()

    @property
    def cache_key(self) -> tuple[str, str, frozenset[str], frozenset[str]]:
        return (self.kind, self.id, self.groups, self.roles)


@dataclass(frozen=True, slots=True)
class Decision:
    """One column's answer. `valid_until` (epoch seconds) bounds how long it may be reused."""

    action: str
    semantic_type: str | None
    algorithm: Mapping[str, Any] | None
    reason_kind: str
    reason_id: int | None = None
    reason_title: str = ""
    expires_at: float | None = None
    request_ref: str = ""
    valid_until: float = _NEVER
    _json: dict[str, Any] | None = field(default=None, init=False, compare=False, repr=False)
    _encoded: tuple[int, orjson.Fragment] | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def unmask(self) -> bool:
        return self.action == "unmask"

    def as_json(self, now: float, default_ttl_s: int) -> dict[str, Any]:
        """The answer as the API returns it (read-only: nested parts are shared between calls).

        Decisions are memoised per column, so everything but `ttl_s` is built once per Decision."""
        fixed = self._json
        if fixed is None:
            reason: dict[str, Any] = {"kind": self.reason_kind}
            if self.reason_id is not None:
                reason["id"] = self.reason_id
            if self.reason_title:
                reason["title"] = self.reason_title
            if self.expires_at is not None:
                reason["expires_at"] = _iso(self.expires_at)
            if self.request_ref:
                reason["request"] = self.request_ref
            fixed = {
                "action": self.action,
                "semantic_type": self.semantic_type,
                "algorithm": self.algorithm,
                "reason": reason,
            }
            object.__setattr__(self, "_json", fixed)
        ttl = default_ttl_s if self.valid_until is _NEVER else min(default_ttl_s, self.valid_until - now)
        return {**fixed, "ttl_s": max(0, int(ttl))}

    def encoded(self, now: float, default_ttl_s: int) -> orjson.Fragment | dict[str, Any]:
        """`as_json`, already encoded when it does not depend on the clock (nothing expires): the
        answer to a column is then encoded once per memoised Decision and copied into every
        response, instead of being rebuilt and re-encoded for each."""
        if self.valid_until is not _NEVER:
            return self.as_json(now, default_ttl_s)
        cached = self._encoded
        if cached is None or cached[0] != default_ttl_s:
            body = orjson.dumps(self.as_json(now, default_ttl_s), default=json_default)
            cached = (default_ttl_s, orjson.Fragment(body))
            object.__setattr__(self, "_encoded", cached)
        return cached[1]


def json_default(value: Any) -> Any:
    """What orjson cannot encode by itself: algorithms are read-only mappings."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


UNKNOWN_COLUMN = Decision("mask", None, FULL_ALGORITHM, "unknown_column")
UNKNOWN_PRINCIPAL = Decision("mask", None, FULL_ALGORITHM, "unknown_principal")
DEGRADED = Decision("mask", None, FULL_ALGORITHM, "degraded", valid_until=0.0)  # never cached: ttl_s 0


@dataclass
class Policy:
    """A snapshot of everything decisions depend on except grants, which change more often and are
    passed to `decide` per request."""

    version: int
    columns: Mapping[ColumnKey, CatalogColumn]
    semantic_types: Mapping[str, SemanticTypeView]
    rules: Sequence[RuleView]
    exemptions: Sequence[ExemptionView]
    mask_classified_from: int | None = 3
    unknown_columns_masked: bool = True
    unclassified: UnclassifiedDefaults = field(default_factory=UnclassifiedDefaults)
    max_principal_tables: int = 10000
    _base: dict[ColumnKey, Decision] = field(default_factory=dict, repr=False)
    _matches: dict[tuple[str, int, ColumnKey], bool] = field(default_factory=dict, repr=False)
    _applicable: dict[tuple[Any, ...], tuple[ExemptionView, ...]] = field(default_factory=dict, repr=False)
    _tables: dict[tuple[Any, ...], dict[ColumnKey, Decision]] = field(default_factory=dict, repr=False)
    _resources: dict[ColumnKey, Any] = field(default_factory=dict, repr=False)

    def decide(
        self,
        principal: Principal | None,
        columns: Iterable[ColumnKey],
        grants: Sequence[ExemptionView] = (),
        *,
        now: float,
    ) -> list[Decision]:
        """Decide every column, in order. `grants` are the principal's grants (any expiry)."""
        if principal is None:
            return [UNKNOWN_PRINCIPAL for _ in columns]
        table_key = (principal.cache_key, tuple(g.id for g in grants))
        table = self._tables.get(table_key)
        if table is None:
            if len(self._tables) >= self.max_principal_tables:
                self._tables.clear()
            table = self._tables[table_key] = {}
        decisions = []
        for key in columns:
            decision = table.get(key)
            if decision is None or decision.valid_until <= now:
                decision = table[key] = self._decide_column(principal, key, grants, now)
            decisions.append(decision)
        return decisions

    def _decide_column(
        self, principal: Principal, key: ColumnKey, grants: Sequence[ExemptionView], now: float
    ) -> Decision:
        column = self.columns.get(key)
        if column is None:
            return (
                UNKNOWN_COLUMN
                if self.unknown_columns_masked
                else Decision("unmask", None, None, "unknown_column")
            )
        base = self._base_decision(column)
        if not base.unmask:
            allowing, next_start = self._best_exemption(principal, column, grants, now)
            if allowing is not None:
                return _unmask_for(allowing, base)
            if next_start is not None:
                # Masked until a scheduled grant starts: the answer must not outlive that moment.
                return replace(base, valid_until=min(base.valid_until, next_start))
        return base

    def _base_decision(self, column: CatalogColumn) -> Decision:
        """The decision for a principal with no exemption; memoised per column."""
        cached = self._base.get(column.key)
        if cached is not None:
            return cached
        decision = self._compute_base(column)
        self._base[column.key] = decision
        return decision

    def _compute_base(self, column: CatalogColumn) -> Decision:
        resource = self._resource(column)
        for rule in self.rules:
            try:
                matched = cel.evaluate(rule.condition, resource)
            except Exception:
                logger.warning(
                    "masking rule %s failed to evaluate on %s; masking in full", rule.id, column.key
                )
                return Decision("mask", None, FULL_ALGORITHM, "rule", rule.id, rule.title)
            if matched:
                return self._mask_with(rule.semantic_type, "rule", rule.id, rule.title)
        if column.semantic_type:
            return self._mask_with(column.semantic_type, "semantic_type", None, column.semantic_type)
        threshold = self.mask_classified_from
        level = column.classification_level
        if threshold is not None and level is not None and level >= threshold:
            return Decision(
                "mask", None, FULL_ALGORITHM, "classification", None, f"classified at level {level}"
            )
        suggested = column.suggested_level
        if threshold is not None and level is None and suggested is not None and suggested >= threshold:
            # Nobody has classified it yet, but it looks sensitive: doubt means mask.
            return Decision(
                "mask",
                None,
                FULL_ALGORITHM,
                "classification",
                None,
                f"unreviewed, looks like level {suggested}",
            )
        if level is None:
            masked, why = self.unclassified.masks(column.project, column.environment)
            if masked:
                return Decision(
                    "mask", None, FULL_ALGORITHM, "unclassified", None, f"not classified; masked by {why}"
                )
        return Decision("unmask", None, None, "not_sensitive")

    def _mask_with(self, semantic_type: str, kind: str, reason_id: int | None, title: str) -> Decision:
        st = self.semantic_types.get(semantic_type)
        algorithm = st.algorithm if st is not None else FULL_ALGORITHM
        return Decision("mask", semantic_type, algorithm, kind, reason_id, title)

    def _best_exemption(
        self, principal: Principal, column: CatalogColumn, grants: Sequence[ExemptionView], now: float
    ) -> tuple[ExemptionView | None, float | None]:
        """The live exemption or grant covering this column that lasts longest (standing first),
        and when the first grant covering it that has not started yet starts."""
        best: ExemptionView | None = None
        next_start: float | None = None
        for candidate in (*self._applicable_exemptions(principal), *grants):
            expires = candidate.expires_at
            if expires is not None and expires <= now:
                continue
            if candidate.project != column.project or not self._matches_column(candidate, column):
                continue
            starts = candidate.starts_at
            if starts is not None and starts > now:
                next_start = starts if next_start is None else min(next_start, starts)
                continue
            if expires is None:
                return candidate, None
            if best is None or (best.expires_at or 0) < expires:
                best = candidate
        return best, next_start

    def _applicable_exemptions(self, principal: Principal) -> tuple[ExemptionView, ...]:
        key = principal.cache_key
        found = self._applicable.get(key)
        if found is None:
            found = self._applicable[key] = tuple(e for e in self.exemptions if e.covers(principal))
        return found

    def _resource(self, column: CatalogColumn) -> Any:
        """The column's CEL `resource`, converted once per snapshot for all its conditions (at most
        one per catalog column, like the snapshot's own `columns`)."""
        found = self._resources.get(column.key)
        if found is None:
            found = self._resources[column.key] = cel.resource_context(column.resource())
        return found

    def _matches_column(self, exemption: ExemptionView, column: CatalogColumn) -> bool:
        memo_key = (exemption.kind, exemption.id, column.key)
        matched = self._matches.get(memo_key)
        if matched is None:
            try:
                matched = cel.evaluate(exemption.condition, self._resource(column))
            except Exception:
                logger.warning(
                    "%s %s failed to evaluate on %s; not applied", exemption.kind, exemption.id, column.key
                )
                matched = False
            self._matches[memo_key] = matched
        return matched


def _unmask_for(exemption: ExemptionView, base: Decision) -> Decision:
    return Decision(
        action="unmask",
        semantic_type=base.semantic_type,
        algorithm=None,
        reason_kind=exemption.kind,
        reason_id=exemption.id,
        expires_at=exemption.expires_at,
        request_ref=exemption.request_ref,
        valid_until=exemption.expires_at if exemption.expires_at is not None else _NEVER,
    )


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat().replace("+00:00", "Z")
