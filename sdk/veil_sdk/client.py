"""Veil's decision client: ask Veil per column whether to mask, cache the answers, mask rows
locally, and report what was returned.

A data-access layer (SQL proxy, BI connector, ORM middleware) calls ``decide`` once per query,
masks the result rows with ``mask_rows`` and reports the query with ``report``. Veil never sees
the values: the algorithms run here (``veil_sdk.algorithms``).

The client fails closed. Whatever goes wrong between it and Veil (timeout, refused connection,
an error status, a body it cannot read, an algorithm it cannot compile) the affected columns are
masked in full with reason ``degraded``, and such answers are never cached, so the next query
asks again. ``decide`` stays on the query path, hence its short default timeout; reporting is
off it: events are queued in memory and posted by a background thread.

Only the standard library is used, so the SDK installs anywhere without dependencies.

Why one module of about a thousand lines: ``VeilClient`` is one object whose parts (``decide``
and its answer cache, the failure counters, the reporting queue and its thread) share one lock,
one cache and one set of counters; split across modules they would reach into each other's private
state. The value types come first, the client in the middle, the wire checks last.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, NamedTuple, TypeAlias

from veil_sdk import algorithms
from veil_sdk.algorithms import FULL_ALGORITHM, Keys, Masker

__all__ = [
    "DEGRADED",
    "FULL_ALGORITHM",
    "ClientStats",
    "Column",
    "ColumnDecision",
    "Principal",
    "Row",
    "RowMasker",
    "VeilClient",
    "service_account",
    "user",
]

logger = logging.getLogger("veil_sdk")

# UTC spelled the Python 3.10 way: the SDK supports 3.10, where datetime.UTC does not exist.
_UTC = timezone.utc  # noqa: UP017

DEGRADED = "degraded"
"""Reason kind of a mask the client (or Veil) chose because it could not decide properly."""

_FULL_MASKER: Masker = algorithms.compile(FULL_ALGORITHM)
_USER_AGENT = "veil-sdk/0.1"
_MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # 1000 decisions are ~300 KB; anything far larger is wrong
_MAX_NAME = 128  # the server's limit on instance, database, schema, table and column names
_MAX_QUERY_ID = 200
_MAX_ROW_COUNT = 2**63 - 1  # the server stores row counts as 64-bit integers
_MAX_REFUSED_LOGGED = 1000  # columns with invalid names are logged once each, up to this many
_MAX_MASKERS = 4096  # distinct algorithms are few; the bound only guards against a misbehaving server
_BACKOFF_START_S = 0.5
_DECISIONS_PATH = "/api/v1/decisions"
_FINGERPRINT = re.compile(r"[0-9a-f]{8,64}")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")
_ARGUMENT_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
_MAX_TOOL_ARGUMENTS = 32
JSON_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object", "null"})
"""What a tool call's argument may be said to be (its shape, never its value)."""
_SETTINGS_PATH = "/api/v1/data-path/settings"


class Column(NamedTuple):
    """A column as Veil's catalog names it. ``schema`` is ``""`` for engines without schemas."""

    instance: str
    database: str
    schema: str
    table: str
    column: str

    def label(self) -> str:
        """``instance/database/schema.table.column``, the form Veil's audit log shows."""
        schema = f"{self.schema}." if self.schema else ""
        return f"{self.instance}/{self.database}/{schema}{self.table}.{self.column}"

    def as_json(self) -> dict[str, str]:
        return self._asdict()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who the data is for: a user (by email or username) or a service account (by name).

    ``groups`` are IdP groups the data-access layer asserts for a user; Veil accepts them only
    from a token with the ``assert-groups`` scope. ``None`` asserts nothing, which differs from
    asserting an empty list only in the cache key. Hashable, so it keys the decision cache.
    Build one with ``user(...)`` or ``service_account(...)``.
    """

    kind: str
    id: str
    groups: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("user", "service_account"):
            raise ValueError(f"principal kind must be 'user' or 'service_account', not {self.kind!r}")
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("a principal needs a non-empty id")
        if self.groups is not None:
            if self.kind != "user":
                raise ValueError("groups can only be asserted for a user")
            if isinstance(self.groups, str):
                raise TypeError("groups must be an iterable of strings, not a string")
            groups = tuple(self.groups)
            if not all(isinstance(g, str) for g in groups):
                raise TypeError("groups must be strings")
            # Sorted and unique: the same groups in another order must hit the same cache entry.
            object.__setattr__(self, "groups", tuple(sorted(set(groups))))

    def as_json(self) -> dict[str, Any]:
        """The ``principal`` object of a decision request."""
        body: dict[str, Any] = {self.kind: self.id}
        if self.groups is not None:
            body["groups"] = list(self.groups)
        return body

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Principal:
        """Read ``{"user": ..., "groups": [...]}`` or ``{"service_account": ...}``."""
        unknown = set(value) - {"user", "service_account", "groups"}
        if unknown:
            raise ValueError(f"unknown principal field(s): {', '.join(sorted(unknown))}")
        if ("user" in value) == ("service_account" in value):
            raise ValueError("give exactly one of 'user' or 'service_account'")
        if "user" in value:
            groups = value.get("groups")
            return cls("user", value["user"], None if groups is None else tuple(groups))
        if "groups" in value:
            raise ValueError("groups can only be asserted for a user")
        return cls("service_account", value["service_account"])


def user(name: str, groups: Iterable[str] | None = None) -> Principal:
    """A user, found by Veil by email (case-insensitive) or username."""
    return Principal("user", name, None if groups is None else tuple(groups))


def service_account(name: str) -> Principal:
    """A service account, by its name in Veil (for pipelines running without a person)."""
    return Principal("service_account", name)


@dataclass(frozen=True, slots=True)
class ColumnDecision:
    """One column's answer, ready to apply: ``apply(value)`` or ``masker``.

    ``algorithm`` is the algorithm actually applied: Veil's, or ``FULL_ALGORITHM`` when Veil's
    could not be compiled here (a ``pseudonym`` whose key this client lacks, say). It is ``None``
    when unmasked. ``reason`` is Veil's reason object (``kind``, and where they apply ``id``,
    ``title``, ``expires_at``, ``request``); ``expires_at`` is its expiry parsed, set for unmasks
    granted until a time. ``ttl_s`` is how long Veil allowed the answer to be reused.
    """

    column: Column
    action: str
    algorithm: Mapping[str, Any] | None
    reason: Mapping[str, Any]
    semantic_type: str | None
    expires_at: datetime | None
    ttl_s: int
    masker: Masker | None = field(repr=False, compare=False)
    """Masks one value; ``None`` when the column is unmasked."""

    @property
    def masked(self) -> bool:
        return self.masker is not None

    @property
    def reason_kind(self) -> str:
        return str(self.reason.get("kind", ""))

    @property
    def degraded(self) -> bool:
        """True when this mask stands in for an answer that could not be obtained."""
        return self.reason_kind == DEGRADED

    def apply(self, value: Any) -> Any:
        """The value to return to the principal: masked, or unchanged when unmasked."""
        return value if self.masker is None else self.masker(value)


def _degraded(column: Column) -> ColumnDecision:
    return ColumnDecision(column, "mask", FULL_ALGORITHM, _DEGRADED_REASON, None, None, 0, _FULL_MASKER)


_DEGRADED_REASON: Mapping[str, Any] = MappingProxyType({"kind": DEGRADED})

Row: TypeAlias = Mapping[str, Any] | Sequence[Any]
"""A result row: a mapping keyed by column name, or a sequence of values in column order."""


class RowMasker:
    """Applies one query's decisions to its rows. Build it once per query, call it per row.

    Sequence rows (DB-API tuples) are matched to the decisions by position and come back as
    tuples. Mapping rows are matched by column name (``Column.column``) and come back as dicts;
    when two decisions share a name (a join) with different treatments, that name is masked in
    full, so for joins prefer sequence rows. Values with no decision (a key no decision names,
    positions past the last decision) are masked in full: nothing leaves unmasked without an
    answer from Veil. Decisions for columns a row lacks are ignored. Input rows are not modified.
    """

    __slots__ = ("_by_index", "_by_name")

    def __init__(self, decisions: Sequence[ColumnDecision]) -> None:
        self._by_index: tuple[Masker | None, ...] = tuple(d.masker for d in decisions)
        by_name: dict[str, Masker | None] = {}
        for decision in decisions:
            name = decision.column.column
            if name in by_name and by_name[name] is not decision.masker:
                by_name[name] = _FULL_MASKER  # conflicting answers for one name: fail closed
            else:
                by_name[name] = decision.masker
        self._by_name = by_name

    def __call__(self, row: Row) -> dict[str, Any] | tuple[Any, ...]:
        if isinstance(row, Mapping):
            by_name = self._by_name
            out: dict[str, Any] = {}
            for key, value in row.items():
                masker = by_name.get(key, _FULL_MASKER)
                out[key] = value if masker is None else masker(value)
            return out
        if isinstance(row, str | bytes | bytearray) or not isinstance(row, Sequence):
            raise TypeError(f"a row must be a mapping or a sequence of values, not {type(row).__name__}")
        plan = self._by_index
        # Not strict: a short row skips the trailing decisions, a long one is handled below.
        masked = [value if m is None else m(value) for value, m in zip(row, plan, strict=False)]
        if len(row) > len(plan):
            masked.extend(_FULL_MASKER(value) for value in row[len(plan) :])
        return tuple(masked)


@dataclass
class ClientStats:
    """Counters for monitoring (and tests). Columns are counted once per occurrence in a call."""

    decision_requests: int = 0
    """HTTP requests sent to the decisions endpoint."""
    decision_failures: int = 0
    """Of those, the ones that failed, so that their columns were masked as degraded."""
    cache_hits: int = 0
    cache_misses: int = 0
    degraded_columns: int = 0
    """Columns answered with a degraded mask, by this client or by Veil itself."""
    compile_failures: int = 0
    """Algorithms that could not be compiled here and were replaced with the full mask."""
    events_queued: int = 0
    events_sent: int = 0
    events_dropped: int = 0
    """Events lost: the queue was full (the oldest go first), or the client was closed."""
    events_rejected: int = 0
    """Events refused as invalid, by ``report`` itself or by Veil (HTTP 400)."""
    event_post_failures: int = 0
    """Posts of events that failed and will be retried."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _ProtocolError(Exception):
    """Veil answered something this client cannot use."""


class _Refused(_ProtocolError):
    """Veil answered with an HTTP error status instead of decisions."""

    def __init__(self, status: int, message: str) -> None:
        # No message in Veil's error shape: not Veil's API answering (a base_url with a path
        # too many, a proxy in the way).
        detail = message or f"not an answer from Veil's API at {_DECISIONS_PATH}: is base_url right?"
        if message and status == 404:  # Veil's API has no such path: base_url has a path too many
            detail += " Is base_url right?"
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.by_veil = bool(message)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: following one would send the bearer token to wherever it points (and
    urllib would turn the POST into a GET). The 3xx then surfaces as an HTTPError."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class VeilClient:
    """Ask Veil per column whether to mask, cache the answers, and report what was returned.

    Thread-safe: one client per process, shared by every query thread, keeps one cache and one
    reporting thread. Concurrent misses for the same column may each ask Veil; the answers agree.

    ``timeout`` (seconds) bounds each socket operation of a decision request: it is on the query
    path, so it is short and a slow Veil costs a masked result rather than a stalled query.
    ``keys`` are the secret keys ``pseudonym`` algorithms name; they never leave this process.
    ``cache_max_entries`` bounds the decision cache (0 disables it); ``clock`` is the monotonic
    clock TTLs are measured with (tests inject one). ``max_columns_per_request`` matches the
    server's ``DECISION_MAX_COLUMNS``: larger queries are asked for in several requests.
    ``mask_ttl`` (seconds) caps how long a mask answer is reused, so that a grant approved
    meanwhile shows within that time (interactive sessions: 1 s); unmask answers keep Veil's TTL.

    Reporting: ``flush_interval`` (seconds) is the longest an event waits before being posted,
    ``event_batch_size`` the most events per post (the server's ``ACCESS_EVENTS_MAX_BATCH``),
    ``event_queue_max`` the most events held while Veil is unreachable, ``report_timeout`` the
    timeout of a post (off the query path, so longer), and ``max_backoff`` caps the wait between
    retries.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 0.5,
        keys: Keys | None = None,
        cache_max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        max_columns_per_request: int = 1000,
        flush_interval: float = 1.0,
        event_batch_size: int = 1000,
        event_queue_max: int = 100_000,
        report_timeout: float = 5.0,
        max_backoff: float = 30.0,
        mask_ttl: float | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        if mask_ttl is not None and mask_ttl < 0:
            raise ValueError("mask_ttl must be zero or more seconds")
        if timeout <= 0 or report_timeout <= 0 or flush_interval <= 0:
            raise ValueError("timeouts and flush_interval must be positive")
        if max_columns_per_request < 1 or event_batch_size < 1 or event_queue_max < 1:
            raise ValueError("max_columns_per_request, event_batch_size and event_queue_max must be >= 1")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.stats = ClientStats()
        self._token = token
        self._keys = keys
        self._clock = clock
        self._cache_max = cache_max_entries
        self._max_columns = max_columns_per_request
        self._mask_ttl = mask_ttl
        self._opener = urllib.request.build_opener(_NoRedirect)

        # Decisions: the cache, the compiled maskers and their counters share one lock.
        self._lock = threading.Lock()
        # (principal, column) -> (expires at, the answer, asked at), on `clock`.
        self._cache: OrderedDict[tuple[Principal, Column], tuple[float, ColumnDecision, float]] = (
            OrderedDict()
        )
        self._maskers: dict[str, tuple[Mapping[str, Any], Masker]] = {}
        self._healthy = True
        self._refused_columns: set[Column] = set()

        # Reporting: the queue, the sender thread and their counters share one condition.
        self._flush_interval = flush_interval
        self._batch_size = event_batch_size
        self._queue_max = event_queue_max
        self._report_timeout = report_timeout
        self._max_backoff = max_backoff
        self._cond = threading.Condition()
        self._queue: deque[dict[str, Any]] = deque()
        self._enqueued = 0  # events ever queued
        self._resolved = 0  # events ever sent, dropped or rejected by the server
        self._flush_target = 0  # send without waiting while _resolved is below this
        self._kick = False  # flush or close asked for an attempt now, even during a backoff
        self._next_attempt = 0.0
        self._in_backoff = False
        self._closed = False
        self._stopping = False
        self._sender: threading.Thread | None = None
        self._events_healthy = True  # only the sender thread reads and writes it

    # --- Decisions ------------------------------------------------------------------------------

    def decide(
        self,
        principal: Principal | Mapping[str, Any],
        columns: Iterable[Column | Sequence[str] | Mapping[str, str]],
        *,
        query_id: str = "",
        mask_ttl: float | None = None,
    ) -> list[ColumnDecision]:
        """One decision per column, in order: cached answers first, the rest from Veil in one batch.

        Never raises for anything Veil or the network does: columns it could not get an answer
        for come back masked in full with reason ``degraded`` (and are not cached). So does a
        column whose names Veil would refuse (an empty name, or one over 128 characters): it is
        not sent, and the other columns are still asked for. It raises ``TypeError``/
        ``ValueError`` only for arguments that are not a principal, columns and a ``query_id`` of
        at most 200 characters, a bug the first call of the caller reveals. ``query_id`` ties
        Veil's audit record of any unmask to the query. ``mask_ttl`` caps, for this call, the age
        of a cached mask answer it reuses (as the client's own ``mask_ttl`` does for every call).
        """
        who = _as_principal(principal)
        wanted = [_as_column(c) for c in columns]
        _check_query_id(query_id)
        if not wanted:
            return []
        results: list[ColumnDecision | None] = [None] * len(wanted)
        missing: dict[Column, list[int]] = {}
        refused = 0
        now = self._clock()
        with self._lock:
            for index, column in enumerate(wanted):
                key = (who, column)
                entry = self._cache.get(key)
                if entry is not None and now < _reusable_until(entry, mask_ttl):
                    results[index] = entry[1]
                    continue
                if entry is not None:
                    del self._cache[key]
                # Checked on a miss only: a column Veil would refuse is never asked for, so never cached.
                problem = _column_problem(column)
                if problem is not None:
                    results[index] = _degraded(column)
                    refused += 1
                    self._note_refused_column(column, problem)
                    continue
                missing.setdefault(column, []).append(index)
            misses = sum(len(indexes) for indexes in missing.values())
            self.stats.cache_hits += len(wanted) - refused - misses
            self.stats.cache_misses += misses
            self.stats.degraded_columns += refused
        if missing:
            fetched = self._fetch(who, list(missing), query_id)
            for column, decision in zip(missing, fetched, strict=True):
                for index in missing[column]:
                    results[index] = decision
            degraded = sum(len(missing[d.column]) for d in fetched if d.degraded)
            if degraded:
                with self._lock:
                    self.stats.degraded_columns += degraded
        return [decision for decision in results if decision is not None]

    def decide_until(
        self,
        principal: Principal | Mapping[str, Any],
        columns: Iterable[Column | Sequence[str] | Mapping[str, str]],
        *,
        query_id: str = "",
        mask_ttl: float | None = None,
    ) -> tuple[list[ColumnDecision], float]:
        """``decide``, and until when (on this client's clock) all of its answers may be reused:
        the earliest expiry among them, or now when any cannot be reused (degraded, a TTL of 0,
        the cache off). A data path that keeps a plan built from the answers keeps it no longer."""
        who = _as_principal(principal)
        decisions = self.decide(who, columns, query_id=query_id, mask_ttl=mask_ttl)
        now = self._clock()
        until = math.inf
        with self._lock:
            for decision in decisions:
                entry = self._cache.get((who, decision.column))
                if entry is None or entry[1] is not decision:
                    return decisions, now
                until = min(until, _reusable_until(entry, mask_ttl))
        return decisions, until

    def data_path_settings(self, instance: str, database: str) -> dict[str, Any]:
        """Veil's settings for one target database (its project and inference guard), for the
        data path. Raises on any failure: the caller decides what failing closed means."""
        query = urllib.parse.urlencode({"instance": instance, "database": database})
        status, payload = self._request("GET", f"{_SETTINGS_PATH}?{query}", None, self.timeout)
        if status != 200 or not isinstance(payload, dict):
            raise _Refused(status, _error_message(payload))
        return payload

    def _note_refused_column(self, column: Column, problem: str) -> None:
        """Log a column Veil would refuse, once per column (called with the lock held)."""
        if column in self._refused_columns:
            return
        if len(self._refused_columns) >= _MAX_REFUSED_LOGGED:
            self._refused_columns.clear()
        self._refused_columns.add(column)
        logger.warning("cannot ask Veil about column %r (%s); masking it in full", column.label(), problem)

    def clear_cache(self) -> None:
        """Forget every cached decision, e.g. after a policy change that must apply at once."""
        with self._lock:
            self._cache.clear()

    def _fetch(self, who: Principal, columns: list[Column], query_id: str) -> list[ColumnDecision]:
        """Veil's answers for distinct columns, in order. After a failed request the remaining
        batches are not attempted: a Veil that just timed out would make each of them wait too."""
        out: list[ColumnDecision] = []
        failed = False
        for start in range(0, len(columns), self._max_columns):
            chunk = columns[start : start + self._max_columns]
            if failed:
                out.extend(_degraded(c) for c in chunk)
                continue
            sent_at = self._clock()  # TTLs run from before the request: never past Veil's
            with self._lock:
                self.stats.decision_requests += 1
            try:
                decisions = self._request_decisions(who, chunk, query_id)
            except Exception as exc:  # fail closed, whatever the cause
                failed = True
                self._note_failure(exc)
                out.extend(_degraded(c) for c in chunk)
                continue
            self._note_success()
            self._store(who, decisions, sent_at)
            out.extend(decisions)
        return out

    def _request_decisions(self, who: Principal, chunk: list[Column], query_id: str) -> list[ColumnDecision]:
        body = {
            "principal": who.as_json(),
            "query_id": query_id,
            "columns": [c.as_json() for c in chunk],
        }
        status, payload = self._post(_DECISIONS_PATH, body, self.timeout)
        if not 200 <= status < 300:
            raise _Refused(status, _error_message(payload))
        if not isinstance(payload, dict):
            raise _ProtocolError("the body is not a JSON object")
        items = payload.get("decisions")
        if not isinstance(items, list) or len(items) != len(chunk):
            count = len(items) if isinstance(items, list) else "no"
            raise _ProtocolError(f"{count} decisions for {len(chunk)} columns")
        return [self._parse_decision(column, item) for column, item in zip(chunk, items, strict=True)]

    def _parse_decision(self, column: Column, item: Any) -> ColumnDecision:
        """Validate one decision strictly: anything unexpected discards the whole answer."""
        if not isinstance(item, dict):
            raise _ProtocolError("a decision is not a JSON object")
        action, reason, ttl = item.get("action"), item.get("reason"), item.get("ttl_s")
        semantic_type = item.get("semantic_type")
        if action not in ("mask", "unmask"):
            raise _ProtocolError(f"unknown action {action!r}")
        if not isinstance(reason, dict) or not isinstance(reason.get("kind"), str):
            raise _ProtocolError("a decision has no reason kind")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
            raise _ProtocolError(f"invalid ttl_s {ttl!r}")
        if semantic_type is not None and not isinstance(semantic_type, str):
            raise _ProtocolError("invalid semantic_type")
        expires_at = _parse_time(reason["expires_at"]) if "expires_at" in reason else None
        frozen_reason = MappingProxyType(dict(reason))
        if action == "unmask":
            return ColumnDecision(column, "unmask", None, frozen_reason, semantic_type, expires_at, ttl, None)
        algorithm = item.get("algorithm")
        if algorithm is None:
            applied, masker = FULL_ALGORITHM, _FULL_MASKER
        elif isinstance(algorithm, dict):
            applied, masker = self._compile(algorithm)
        else:
            raise _ProtocolError("algorithm is not a JSON object")
        return ColumnDecision(column, "mask", applied, frozen_reason, semantic_type, expires_at, ttl, masker)

    def _compile(self, algorithm: dict[str, Any]) -> tuple[Mapping[str, Any], Masker]:
        """Compile once per distinct algorithm; one that cannot be compiled here masks in full."""
        key = json.dumps(algorithm, sort_keys=True, separators=(",", ":"))
        with self._lock:
            found = self._maskers.get(key)
        if found is not None:
            return found
        try:
            compiled: tuple[Mapping[str, Any], Masker] = (
                MappingProxyType(algorithm),
                algorithms.compile(algorithm, keys=self._keys),
            )
        except Exception as exc:  # AlgorithmError, or anything else: fail closed
            logger.warning("cannot apply masking algorithm %s (%s); masking in full instead", key, exc)
            compiled = (FULL_ALGORITHM, _FULL_MASKER)
            with self._lock:
                self.stats.compile_failures += 1
        with self._lock:
            if len(self._maskers) >= _MAX_MASKERS:
                self._maskers.clear()
            return self._maskers.setdefault(key, compiled)

    def _store(self, who: Principal, decisions: list[ColumnDecision], sent_at: float) -> None:
        if self._cache_max <= 0:
            return
        with self._lock:
            for decision in decisions:
                if decision.ttl_s <= 0 or decision.degraded:
                    continue
                key = (who, decision.column)
                ttl = (
                    decision.ttl_s
                    if self._mask_ttl is None or not decision.masked
                    else min(decision.ttl_s, self._mask_ttl)
                )
                self._cache[key] = (sent_at + ttl, decision, sent_at)
                self._cache.move_to_end(key)
            while len(self._cache) > self._cache_max:
                self._cache.popitem(last=False)  # the oldest answer, the likeliest to be stale

    def _note_failure(self, exc: Exception) -> None:
        with self._lock:
            self.stats.decision_failures += 1
            first, self._healthy = self._healthy, False
        # A 4xx is a request Veil refused (a token without the scope, groups asserted without
        # assert-groups...): say so, rather than blaming an outage that is not happening.
        refused = isinstance(exc, _Refused) and exc.by_veil and 400 <= exc.status < 500
        what = "Veil refused the decision request" if refused else "Veil decisions unavailable"
        if first:
            logger.warning("%s (%s); masking the columns in full", what, _describe(exc))
        else:
            logger.debug("%s again: %s", what, _describe(exc))

    def _note_success(self) -> None:
        if not self._healthy:
            with self._lock:
                self._healthy = True
            logger.warning("Veil decisions available again")

    # --- Masking --------------------------------------------------------------------------------

    def row_masker(self, decisions: Sequence[ColumnDecision]) -> RowMasker:
        """A callable masking rows with these decisions: build once, apply to a streamed result."""
        return RowMasker(decisions)

    def mask_row(self, row: Row, decisions: Sequence[ColumnDecision]) -> dict[str, Any] | tuple[Any, ...]:
        """One row with each column's decision applied; see ``RowMasker`` for the row forms."""
        return RowMasker(decisions)(row)

    def mask_rows(
        self, rows: Iterable[Row], decisions: Sequence[ColumnDecision]
    ) -> list[dict[str, Any] | tuple[Any, ...]]:
        """Every row masked; the decisions are prepared once for all of them."""
        masker = RowMasker(decisions)
        return [masker(row) for row in rows]

    # --- Access events --------------------------------------------------------------------------

    def report(
        self,
        principal: Principal | Mapping[str, Any],
        query_id: str,
        unmasked_columns: Iterable[Column | Sequence[str] | Mapping[str, str]],
        masked_columns: Iterable[Column | Sequence[str] | Mapping[str, str]],
        row_count: int,
        occurred_at: datetime | None = None,
        *,
        guard: Mapping[str, str] | None = None,
        fingerprint: str | None = None,
        tool_call: Mapping[str, Any] | None = None,
    ) -> bool:
        """Queue an access event (what one query returned) for delivery in the background.

        Returns at once and never raises: an invalid event is logged, counted in
        ``stats.events_rejected`` and skipped (False). When the queue is full the oldest event is
        dropped (``stats.events_dropped``). ``occurred_at`` defaults to now; naive means UTC.
        ``guard`` reports what the data path's inference guard did (``outcome`` ``refused`` or
        ``audited``, the ``clause`` and the ``message``); Veil records it in the audit log.
        ``fingerprint`` is the statement's (hex, no literal in it: ``datapath.origin``);
        ``tool_call`` the agent's tool call that ran the query: ``{"tool": name, "arguments":
        {argument: JSON type}}``, the arguments' shape and never their values.
        """
        try:
            event = _event(principal, query_id, unmasked_columns, masked_columns, row_count, occurred_at)
            if guard is not None:
                event["guard"] = {
                    "outcome": str(guard["outcome"]),
                    "clause": str(guard["clause"])[:200],
                    "message": str(guard.get("message", ""))[:2000],
                }
            if fingerprint is not None:
                event["fingerprint"] = _checked_fingerprint(fingerprint)
            if tool_call is not None:
                event["tool_call"] = _checked_tool_call(tool_call)
        except Exception as exc:
            logger.warning("access event not reported: %s", exc)
            with self._cond:
                self.stats.events_rejected += 1
            return False
        with self._cond:
            if self._closed:
                self.stats.events_dropped += 1
                logger.warning("access event reported after close(); dropped")
                return False
            if not self._queue and not self._in_backoff:
                self._next_attempt = max(self._next_attempt, time.monotonic() + self._flush_interval)
            self._queue.append(event)
            self._enqueued += 1
            self.stats.events_queued += 1
            self._drop_overflow()
            if len(self._queue) in (1, self._batch_size):
                self._cond.notify_all()
            if self._sender is None:
                self._sender = threading.Thread(target=self._run, name="veil-sdk-events", daemon=True)
                self._sender.start()
        return True

    def report_decisions(
        self,
        principal: Principal | Mapping[str, Any],
        query_id: str,
        decisions: Iterable[ColumnDecision],
        row_count: int,
        occurred_at: datetime | None = None,
    ) -> bool:
        """``report`` with the columns split by how ``decisions`` treated them."""
        decisions = list(decisions)
        unmasked = [d.column for d in decisions if not d.masked]
        masked = [d.column for d in decisions if d.masked]
        return self.report(principal, query_id, unmasked, masked, row_count, occurred_at)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds for every event reported so far to be dealt with.

        Cuts short any wait (the flush interval, a retry backoff). Returns True when each of
        those events was sent, or dropped or rejected as counted in ``stats``; False on timeout
        (the events stay queued and delivery goes on in the background).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._enqueued
            if self._resolved >= target:
                return True
            self._flush_target = max(self._flush_target, target)
            self._kick = True
            self._cond.notify_all()
            while self._resolved < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float = 5.0) -> bool:
        """Flush (up to ``timeout`` seconds), then stop the reporting thread.

        Returns whether every event was delivered; undelivered ones are counted as dropped.
        Later ``report`` calls are dropped; ``decide`` keeps working. Idempotent.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._closed:
                return True
            self._closed = True
        delivered = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            sender = self._sender
        if sender is not None:
            sender.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            lost = len(self._queue)
            if lost:
                self._queue.clear()
                self.stats.events_dropped += lost
                self._resolved += lost
                self._cond.notify_all()
        if lost:
            logger.warning("Veil client closed with %d access event(s) undelivered", lost)
        return delivered and not lost

    def __enter__(self) -> VeilClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _drop_overflow(self) -> None:
        """Drop the oldest events beyond the bound (called with the condition held)."""
        overflow = len(self._queue) - self._queue_max
        if overflow <= 0:
            return
        for _ in range(overflow):
            self._queue.popleft()
        self.stats.events_dropped += overflow
        self._resolved += overflow
        self._cond.notify_all()
        logger.warning("access event queue full; dropped the %d oldest event(s)", overflow)

    def _run(self) -> None:
        """The sender thread: post batches when due, retry with backoff, until closed."""
        failures = 0
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                undelivered = self._deliver(batch)
            except Exception:  # a bug here must not kill the thread and strand the queue
                logger.exception("unexpected error posting access events; will retry")
                undelivered = batch
            with self._cond:
                now = time.monotonic()
                if undelivered and self._stopping:  # closed meanwhile: nobody will retry them
                    self.stats.events_dropped += len(undelivered)
                    self._resolved += len(undelivered)
                    self._cond.notify_all()
                    logger.warning("Veil client closed with %d access event(s) undelivered", len(undelivered))
                elif undelivered:
                    failures += 1
                    self.stats.event_post_failures += 1
                    self._queue.extendleft(reversed(undelivered))
                    self._drop_overflow()
                    backoff = min(self._max_backoff, _BACKOFF_START_S * 2 ** min(failures - 1, 30))
                    # Jitter spreads the retries of many clients after an outage.
                    self._next_attempt = now + backoff * random.uniform(0.5, 1.0)  # noqa: S311
                    self._in_backoff = True
                else:
                    failures = 0
                    self._in_backoff = False
                    self._next_attempt = now + self._flush_interval

    def _next_batch(self) -> list[dict[str, Any]] | None:
        """Wait until a batch is due and take it; None once the client is stopping."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                if self._queue:
                    now = time.monotonic()
                    urgent = self._resolved < self._flush_target or len(self._queue) >= self._batch_size
                    if self._kick or now >= self._next_attempt or (urgent and not self._in_backoff):
                        break
                    self._cond.wait(self._next_attempt - now)
                else:
                    self._cond.wait()
            self._kick = False
            count = min(self._batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def _deliver(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Post a batch; return the events to retry later.

        A batch Veil refuses as invalid (400) is split in halves until the invalid events are
        isolated and dropped, so one bad event cannot block the queue or take good ones with it.
        """
        pending = [batch]
        while pending:
            chunk = pending.pop()
            outcome = self._post_events(chunk)
            if outcome == "sent":
                self._resolve(len(chunk), sent=True)
            elif outcome == "rejected" and len(chunk) > 1:
                middle = len(chunk) // 2
                pending += [chunk[middle:], chunk[:middle]]
            elif outcome == "rejected":
                logger.error("Veil refused an access event; dropped: %s", json.dumps(chunk[0]))
                self._resolve(1, sent=False)
            else:
                return chunk + [event for later in reversed(pending) for event in later]
        return []

    def _resolve(self, count: int, *, sent: bool) -> None:
        with self._cond:
            if sent:
                self.stats.events_sent += count
            else:
                self.stats.events_rejected += count
            self._resolved += count
            self._cond.notify_all()

    def _post_events(self, chunk: list[dict[str, Any]]) -> str:
        """``sent``, ``rejected`` (invalid: retrying cannot help) or ``retry``."""
        try:
            status, payload = self._post("/api/v1/access-events", {"events": chunk}, self._report_timeout)
        except Exception as exc:
            self._note_events_failure(_describe(exc))
            return "retry"
        if 200 <= status < 300:
            if not self._events_healthy:
                self._events_healthy = True
                logger.warning("Veil accepts access events again")
            return "sent"
        message = _error_message(payload) or "(not an answer from Veil's API: is base_url right?)"
        if status in (400, 413, 422):
            logger.warning("Veil refused %d access event(s): HTTP %s %s", len(chunk), status, message)
            return "rejected"
        # 401/403 (token revoked, scope missing), 404, 429, 5xx: keep the events, fixable or passing.
        self._note_events_failure(f"HTTP {status} {message}")
        return "retry"

    def _note_events_failure(self, detail: str) -> None:
        """Log the first failure of an outage as a warning and the retries that follow as debug."""
        if self._events_healthy:
            self._events_healthy = False
            logger.warning("cannot post access events to Veil (%s); keeping them and retrying", detail)
        else:
            logger.debug("access events still not accepted by Veil: %s", detail)

    # --- HTTP -----------------------------------------------------------------------------------

    def _post(self, path: str, body: Mapping[str, Any], timeout: float) -> tuple[int, Any]:
        """POST JSON; the status and the decoded body (None when not JSON). Raises on network errors."""
        return self._request("POST", path, body, timeout)

    def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None, timeout: float
    ) -> tuple[int, Any]:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.base_url + path,
            data=None if body is None else json.dumps(body, separators=(",", ":")).encode(),
            method=method,
            headers=headers,
        )
        try:
            with self._opener.open(request, timeout=timeout) as response:
                status, raw = response.status, response.read(_MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as error:
            with error:
                status, raw = error.code, error.read(64 * 1024)
        if len(raw) > _MAX_RESPONSE_BYTES:
            raise _ProtocolError("response too large")
        try:
            payload = json.loads(raw)
        except ValueError:
            if 200 <= status < 300:
                raise _ProtocolError("the body is not JSON") from None
            payload = None
        return status, payload


# --- Helpers ----------------------------------------------------------------------------------


def _as_principal(value: Principal | Mapping[str, Any]) -> Principal:
    if isinstance(value, Principal):
        return value
    if isinstance(value, Mapping):
        return Principal.from_json(value)
    raise TypeError(f"principal must be a Principal or a mapping, not {type(value).__name__}")


def _as_column(value: Column | Sequence[str] | Mapping[str, str]) -> Column:
    if isinstance(value, Column):
        return value
    if isinstance(value, Mapping):
        try:
            column = Column(
                value["instance"], value["database"], value.get("schema", ""), value["table"], value["column"]
            )
        except KeyError as missing:
            raise TypeError(f"a column mapping needs {missing}") from None
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 5:
        column = Column(*value)
    else:
        raise TypeError(f"a column must be a Column, a 5-tuple of names or a mapping, not {value!r}")
    if not all(isinstance(part, str) for part in column):
        raise TypeError(f"column names must be strings: {column!r}")
    return column


def _event(
    principal: Principal | Mapping[str, Any],
    query_id: str,
    unmasked_columns: Iterable[Column | Sequence[str] | Mapping[str, str]],
    masked_columns: Iterable[Column | Sequence[str] | Mapping[str, str]],
    row_count: int,
    occurred_at: datetime | None,
) -> dict[str, Any]:
    """An access event as the API takes it, checked against the server's limits now, so that an
    invalid one is refused to its caller's log rather than in a batch with good ones."""
    who = _as_principal(principal)
    _check_query_id(query_id)
    if not isinstance(row_count, int) or isinstance(row_count, bool) or not 0 <= row_count <= _MAX_ROW_COUNT:
        raise ValueError(f"row_count must be an integer from 0 to 2**63 - 1, not {row_count!r}")
    when = datetime.now(_UTC) if occurred_at is None else occurred_at
    if not isinstance(when, datetime):
        raise TypeError("occurred_at must be a datetime")
    if when.tzinfo is None:
        when = when.replace(tzinfo=_UTC)
    return {
        "principal": {who.kind: who.id},  # groups only matter to decisions
        "query_id": query_id,
        "occurred_at": when.astimezone(_UTC).isoformat().replace("+00:00", "Z"),
        "unmasked_columns": [_checked_column(c) for c in unmasked_columns],
        "masked_columns": [_checked_column(c) for c in masked_columns],
        "row_count": row_count,
    }


def _reusable_until(entry: tuple[float, ColumnDecision, float], mask_ttl: float | None) -> float:
    """Until when a cache entry may be reused: its expiry, and for a mask no more than
    ``mask_ttl`` after it was asked for."""
    expires, decision, asked = entry
    if mask_ttl is None or decision.masker is None:
        return expires
    return min(expires, asked + mask_ttl)


def _checked_column(value: Column | Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    return _column_json(_as_column(value))


@functools.lru_cache(maxsize=8192)
def _column_json(column: Column) -> dict[str, str]:
    """A column as the API takes it, checked once per distinct column (a data path reports the
    same few columns for every query). The dict is shared: events are only ever serialized."""
    problem = _column_problem(column)
    if problem is not None:
        raise ValueError(f"{problem}: {column.label()}")
    return column.as_json()


def _column_problem(column: Column) -> str | None:
    """Why Veil would refuse this column reference (and with it the whole request), or None."""
    for name, part in zip(Column._fields, column, strict=True):
        if name == "schema" and len(part) > _MAX_NAME:
            return f"the schema name is over {_MAX_NAME} characters"
        if name != "schema" and not 0 < len(part) <= _MAX_NAME:
            return f"the {name} name must be 1 to {_MAX_NAME} characters"
    return None


def _check_query_id(query_id: Any) -> None:
    if not isinstance(query_id, str) or len(query_id) > _MAX_QUERY_ID:
        raise ValueError(f"query_id must be a string of at most {_MAX_QUERY_ID} characters")


def _checked_fingerprint(value: Any) -> str:
    if not isinstance(value, str) or not _FINGERPRINT.fullmatch(value):
        raise ValueError("fingerprint must be 8 to 64 lowercase hex digits")
    return value


def _checked_tool_call(value: Mapping[str, Any]) -> dict[str, Any]:
    """A tool call as the API takes it: a tool name and its arguments' JSON types, bounded."""
    tool, arguments = value.get("tool"), value.get("arguments") or {}
    if not isinstance(tool, str) or not _TOOL_NAME.fullmatch(tool):
        raise ValueError(f"tool_call.tool must match {_TOOL_NAME.pattern}, not {str(tool)[:130]!r}")
    if not isinstance(arguments, Mapping) or len(arguments) > _MAX_TOOL_ARGUMENTS:
        raise ValueError(f"tool_call.arguments must map at most {_MAX_TOOL_ARGUMENTS} names to JSON types")
    for name, kind in arguments.items():
        if not isinstance(name, str) or not _ARGUMENT_NAME.fullmatch(name) or kind not in JSON_TYPES:
            # The value is not quoted: it may be the argument itself (SQL, a reason), not a type.
            raise ValueError(f"tool_call.arguments: {str(name)[:64]!r} must name a JSON type")
    return {"tool": tool, "arguments": dict(arguments)}


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _ProtocolError("expires_at is not a string")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value  # 3.10 rejects Z
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _ProtocolError(f"invalid expires_at {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_UTC)


def _error_message(payload: Any) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return str(payload["error"].get("message", ""))
    return ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return f"{type(exc).__name__}: {exc.reason}"
    if isinstance(exc, _ProtocolError):
        return str(exc)  # already says what Veil answered
    return f"{type(exc).__name__}: {exc}"
