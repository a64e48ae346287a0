"""The decision path: one request from a data-access layer, answered fail-closed.

Contract: every column gets an answer; an unmask answer is recorded durably (one INSERT) before it
is returned; any failure (database down, engine error, recording failed) turns every answer into a
mask with reason `degraded`. Nothing here raises to the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from audit.services import record_unmask_decisions
from masking.decisions.engine import DEGRADED, ColumnKey, Decision, json_default
from masking.selectors import decision_caches
from masking.services.catalog import DiscoveryBudget, catalog_record_discovered
from shared.metrics import count_decision_request

logger = logging.getLogger(__name__)
DATABASE_WARNING_INTERVAL_S = 60.0


class DatabaseFailureLog:
    """While PostgreSQL is away every decision fails the same way, hundreds a second: a traceback
    each would bury the log. One warning line naming the error class, at most once per
    `interval_s` per process, saying how many more answered mask since the last one."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._next_at = 0.0
        self._unlogged = 0

    def failed(self, exc: DatabaseError) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next_at:
                self._unlogged += 1
                return
            unlogged, self._unlogged, self._next_at = self._unlogged, 0, now + self.interval_s
        since = f" ({unlogged} more since the last warning)" if unlogged else ""
        logger.warning("database error %s: a decision request answered mask%s", type(exc).__name__, since)


database_failures = DatabaseFailureLog(DATABASE_WARNING_INTERVAL_S)


@dataclass(frozen=True)
class DecisionResult:
    policy_version: int | None
    decisions: list[Decision]
    now: float
    record_id: int | None = None

    @property
    def degraded(self) -> bool:
        return self.policy_version is None

    def encode(self) -> bytes:
        """The response body, from each Decision's memoised, already encoded part where it has one."""
        ttl = settings.DECISION_TTL_S
        body: dict[str, Any] = {
            "policy_version": self.policy_version,
            "decisions": [d.encoded(self.now, ttl) for d in self.decisions],
        }
        if self.degraded:
            body["degraded"] = True  # DEGRADED answers carry ttl_s 0
        if self.record_id is not None:
            body["record_id"] = self.record_id
        return orjson.dumps(body, default=json_default)


def decide_columns(
    *,
    service_account: str,
    principal_spec: Mapping[str, str],
    asserted_groups: Sequence[str],
    query_id: str,
    columns: Sequence[ColumnKey],
    token_prefix: str | None = None,
) -> DecisionResult:
    """Decide every column for the principal and record the unmasks. Never raises.

    `token_prefix` names the API token that asked: the columns it may add to the catalog as
    discoveries are bounded per token (`DiscoveryBudget`). Callers that are not a token's request
    (demo data, tests) pass None."""
    started = time.perf_counter()
    now = timezone.now().timestamp()
    try:
        epochs = decision_caches.epochs()
        policy = decision_caches.policy(epochs)
        principal = decision_caches.principal(principal_spec, frozenset(asserted_groups))
        grants = decision_caches.grants(epochs, principal) if principal is not None else []
        decisions = policy.decide(principal, columns, grants, now=now)
        unmasked = [
            {
                "column": key.label(),
                "reason": d.reason_kind,
                "id": d.reason_id,
                "expires_at": d.expires_at,
                "request": d.request_ref,
            }
            for key, d in zip(columns, decisions, strict=True)
            if d.unmask and d.reason_kind in ("exemption", "grant")
        ]
        record_id = None
        if unmasked:
            assert principal is not None
            record_id = record_unmask_decisions(
                service_account=service_account,
                principal_type=principal.kind,
                principal_id=principal.id,
                principal_name=principal.name,
                query_id=query_id,
                policy_version=epochs.policy,
                asserted_groups=sorted(asserted_groups),
                unmasked=unmasked,
            )
        budget = (
            DiscoveryBudget(token_prefix=token_prefix, service_account=service_account)
            if token_prefix is not None
            else None
        )
        _report_unknown_columns(columns, decisions, budget)
        result = DecisionResult(epochs.policy, decisions, now, record_id)
    except DatabaseError as exc:
        database_failures.failed(exc)
        result = DecisionResult(None, [DEGRADED] * len(columns), now)
    except Exception:
        logger.exception("decision failed; answering mask for all %d columns", len(columns))
        result = DecisionResult(None, [DEGRADED] * len(columns), now)
    count_decision_request(
        ((d.action, d.reason_kind) for d in result.decisions),
        time.perf_counter() - started,
        fail_closed=result.degraded,
    )
    return result


_reported_unknown: set[ColumnKey] = set()


def _report_unknown_columns(
    columns: Sequence[ColumnKey], decisions: Sequence[Decision], budget: DiscoveryBudget | None
) -> None:
    """Put columns the catalog lacks into it as unclassified discoveries, once per process.

    Best effort and after the answer is decided: a failure here never changes an answer. Columns
    the token's budget left out are not remembered, so a later request may record them.
    """
    unknown = [k for k, d in zip(columns, decisions, strict=True) if d.reason_kind == "unknown_column"]
    fresh = [k for k in unknown if k not in _reported_unknown]
    if not fresh:
        return
    try:
        catalog_record_discovered(fresh, budget=budget)
    except Exception:
        logger.warning("could not record %d unknown column(s) in the catalog", len(fresh), exc_info=True)
        return
    if budget is not None and budget.shortfall:
        return
    if len(_reported_unknown) > 100_000:
        _reported_unknown.clear()
    _reported_unknown.update(fresh)
