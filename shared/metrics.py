"""Veil's process metrics (Prometheus), and the cheap, never-failing ways the apps count into them.

Counters and histograms live in each process; `config.metrics` serves them at `/metrics` together
with gauges read from the database at scrape time. Under gunicorn the workers write them to files
in `PROMETHEUS_MULTIPROC_DIR` (set by `gunicorn.conf.py` before any worker imports this module),
so one scrape sees every worker.

The decision path counts through `count_decision_request`: one call per request, children of the
labelled counter bound once per process (a `labels()` lookup takes a lock each time), and any
error swallowed, because a metric must never change or delay an answer (fail closed stays exact).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Histogram

logger = logging.getLogger(__name__)

DECISIONS = Counter(
    "veil_decisions",
    "Column decisions answered, by action (mask/unmask) and reason kind",
    ["action", "reason"],
)
DECISION_REQUESTS = Counter("veil_decision_requests", "Decision requests answered")
FAIL_CLOSED = Counter(
    "veil_decision_fail_closed",
    "Decision requests answered mask for every column because something failed (database, engine, "
    "recording the unmask); each is also in veil_decision_requests",
)
DECISION_SECONDS = Histogram(
    "veil_decision_duration_seconds",
    "Time to decide one decision request (policy, grants and recording the unmask), in the server",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
UNMASK_RECORDS = Counter(
    "veil_unmask_records",
    "Unmask records (audit.DecisionRecord) by outcome: written, or failed (the answer was then mask)",
    ["outcome"],
)
LOGIN_FAILURES = Counter(
    "veil_login_failures",
    "Failed password sign-ins (failed) and lockouts (locked_out)",
    ["kind"],
)

_decision_children: dict[tuple[str, str], Any] = {}
_record_written = UNMASK_RECORDS.labels("written")
_record_failed = UNMASK_RECORDS.labels("failed")


def count_decision_request(outcomes: Iterable[tuple[str, str]], seconds: float, *, fail_closed: bool) -> None:
    """Count one answered request: its (action, reason kind) pairs, its duration, whether it failed
    closed. Pairs repeat across columns, so each distinct pair is incremented once by its count."""
    try:
        tally: dict[tuple[str, str], int] = {}
        for pair in outcomes:
            tally[pair] = tally.get(pair, 0) + 1
        for pair, n in tally.items():
            child = _decision_children.get(pair)
            if child is None:
                child = _decision_children[pair] = DECISIONS.labels(*pair)
            child.inc(n)
        DECISION_REQUESTS.inc()
        if fail_closed:
            FAIL_CLOSED.inc()
        DECISION_SECONDS.observe(seconds)
    except Exception:  # a metric never fails a decision
        logger.debug("could not count a decision request", exc_info=True)


def count_fail_closed_before_deciding(columns: int) -> None:
    """A request answered mask before the engine ran (the token could not be checked, say)."""
    try:
        child = _decision_children.get(_DEGRADED)
        if child is None:
            child = _decision_children[_DEGRADED] = DECISIONS.labels(*_DEGRADED)
        child.inc(columns)
        DECISION_REQUESTS.inc()
        FAIL_CLOSED.inc()
    except Exception:
        logger.debug("could not count a fail-closed request", exc_info=True)


_DEGRADED = ("mask", "degraded")


def count_unmask_record(*, written: bool) -> None:
    try:
        (_record_written if written else _record_failed).inc()
    except Exception:
        logger.debug("could not count an unmask record", exc_info=True)


def count_login_failure(kind: str) -> None:
    try:
        LOGIN_FAILURES.labels(kind).inc()
    except Exception:
        logger.debug("could not count a login failure", exc_info=True)
