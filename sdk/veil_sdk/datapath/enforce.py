"""Enforce Veil's decisions on one query: the inference guard before it runs, the masking plan
for each of its results, one access event after.

Sans-IO, so the psycopg adapter (sync and async) and veil-proxy share it: ``Check`` and
``Planning`` hand out the catalog lookups they need (``next_lookup``), the caller runs each on
the session's connection and feeds the rows back. Asking Veil (``VeilClient.decide``) is the one
blocking call; async callers run it in a thread.

Decisions combine as follows. A plain column passes with its own decision (a view's column with
the view's, when Veil's catalog lists it; otherwise with its base column's, traced through the
view's definition). A derived column is masked in full when any column it reads is masked. A
column with no known source (``untraceable``) is masked in full. A masked column used anywhere
but as a plain output refuses the query (SQLSTATE 42501) in ``refuse`` mode, or runs it masked
and records the attempt in ``audit`` mode.

Why one module over 600 lines: ``Check`` (the guard, before the query runs) and ``Planning`` (the
masking plan of each result) are the two halves of one query's enforcement; they share
``_Resolution`` (the catalog lookups they hand out) and the decision helpers at the end, and the
adapter and the proxy drive both through the same few calls.
"""

from __future__ import annotations

import math
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from veil_sdk.algorithms import Masker
from veil_sdk.client import _FULL_MASKER, FULL_ALGORITHM, Column, ColumnDecision, Principal, VeilClient
from veil_sdk.datapath.analysis import Lineage, ParseError, Source, Statement, analyze, analyze_view, parse
from veil_sdk.datapath.catalog import CatalogCache, Lookup, Relation, SessionCatalog
from veil_sdk.datapath.origin import current_tool_call, statement_fingerprint

WITHHELD_CLASSES = ("22", "23")
"""SQLSTATE classes whose messages quote values: data exceptions and integrity violations."""

__all__ = [
    "GUARD_MODES",
    "UNTRACEABLE",
    "WITHHELD_CLASSES",
    "Check",
    "Enforcer",
    "Field",
    "GuardRefusal",
    "Planning",
    "ResultPlan",
    "Session",
]

GUARD_MODES = ("refuse", "audit")
UNTRACEABLE = "untraceable"
"""Reason kind of a column masked because its source could not be traced."""

_MAX_VIEW_DEPTH = 8
_MAX_LOOKUP_ROUNDS = 32  # each round resolves a whole level of names; a deeper chain is refused
_SETTINGS_RETRY_S = 5.0  # after Veil could not say which guard mode applies
_MAX_MEMOS = 512  # distinct statements a session keeps checked; a program repeats a few
_UNTRACEABLE_REASON: Mapping[str, Any] = MappingProxyType({"kind": UNTRACEABLE})


class GuardRefusal(Exception):
    """The query must not run: send ``sqlstate`` and ``message`` to the client instead."""

    def __init__(
        self, sqlstate: str, message: str, *, columns: Sequence[Column] = (), clause: str = ""
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.columns = tuple(columns)
        self.clause = clause


class Field(NamedTuple):
    """A result column as RowDescription describes it (table OID and attnum 0 when derived)."""

    name: str
    table_oid: int = 0
    attnum: int = 0
    type_oid: int = 0


@dataclass(frozen=True)
class ResultPlan:
    """How to mask one result: a masker per field (None: pass the value as is)."""

    maskers: tuple[Masker | None, ...]
    decisions: tuple[ColumnDecision, ...]
    columns: tuple[tuple[Column, bool], ...] = ()
    """The catalog columns the result read, each with whether it was returned unmasked."""

    @property
    def masked_any(self) -> bool:
        return any(m is not None for m in self.maskers)

    def apply(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(value if m is None else m(value) for value, m in zip(row, self.maskers, strict=True))


class Enforcer:
    """Enforcement for one target (a Veil instance name and database), shared by every session
    to it: holds the Veil client, the guard mode and the catalog cache (thread-safe)."""

    def __init__(
        self,
        client: VeilClient,
        instance: str,
        database: str,
        *,
        guard_mode: str | None = None,
        request_url: str | None = None,
        catalog_ttl_s: float = 10.0,
        mask_ttl: float | None = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if guard_mode is not None and guard_mode not in GUARD_MODES:
            raise ValueError(f"guard_mode must be one of {', '.join(GUARD_MODES)}, not {guard_mode!r}")
        if not instance or not database:
            raise ValueError("instance and database name the target in Veil's catalog; both are required")
        self.client = client
        self.instance = instance
        self.database = database
        self._guard_mode = guard_mode
        self.mask_ttl = mask_ttl
        """How old a cached mask answer may be before it is asked for again: a grant approved
        meanwhile shows on the next query after that (None: Veil's ttl_s)."""
        self._clock = clock
        self._settings: tuple[float, str] = (-math.inf, "refuse")
        self.request_url = request_url or client.base_url + "/requests/new/"
        self.catalog = CatalogCache(catalog_ttl_s, clock)
        self._views: dict[int, tuple[str, list[tuple[str, Lineage]] | None]] = {}
        self._views_lock = threading.Lock()

    @property
    def guard_mode(self) -> str:
        """``refuse`` or ``audit``: as given, else as Veil's project setting says (re-read every
        ``ttl_s``; ``refuse`` when Veil cannot say)."""
        if self._guard_mode is not None:
            return self._guard_mode
        until, mode = self._settings
        now = self._clock()
        if now < until:
            return mode
        try:
            answer = self.client.data_path_settings(self.instance, self.database)
            mode = answer["inference_guard"] if answer.get("inference_guard") in GUARD_MODES else "refuse"
            self._settings = (now + min(max(int(answer.get("ttl_s", 60)), 0), 300), mode)
        except Exception:  # fail closed: the strict mode, asked again a little later
            mode = "refuse"
            self._settings = (now + _SETTINGS_RETRY_S, mode)
        return mode

    def session(self) -> Session:
        """State for one connection: its names, prepared statements and cursors."""
        return Session(self)

    def column(self, source: Source) -> Column:
        return Column(self.instance, self.database, source.schema, source.table, source.column)

    def request_link(self, columns: Iterable[Column]) -> str:
        query = urllib.parse.urlencode([("column", c.label()) for c in columns])
        return f"{self.request_url}?{query}"

    def view_outputs(self, relation: Relation, catalog: SessionCatalog) -> list[tuple[str, Lineage]] | None:
        """A view's outputs traced through its definition, cached with the definition's text."""
        with self._views_lock:
            cached = self._views.get(relation.oid)
        if cached is not None and cached[0] == relation.view_sql:
            return cached[1]
        outputs = analyze_view(relation.view_sql or "", catalog)
        if not (catalog.missing_names or catalog.missing_oids or catalog.missing_functions):
            with self._views_lock:
                self._views[relation.oid] = (relation.view_sql or "", outputs)
        return outputs


class Session:
    """One connection's state. Not thread-safe: a connection runs one query at a time."""

    def __init__(self, enforcer: Enforcer) -> None:
        self.enforcer = enforcer
        self.catalog = SessionCatalog(enforcer.catalog)
        self.prepared: dict[str, Statement] = {}
        self.cursors: dict[str, Statement] = {}
        self._memos: dict[tuple[str, Principal | None], _Memo] = {}

    def memo(self, sql: str, principal: Principal | None) -> _Memo | None:
        """What an earlier run of this statement for this principal established, while every
        decision it rests on may still be reused and the catalog has not moved."""
        memo = self._memos.get((sql, principal))
        if memo is None:
            return None
        if memo.state != self.catalog.state() or self.enforcer.catalog.now() >= memo.until:
            del self._memos[(sql, principal)]
            return None
        return memo

    def remember(self, sql: str, principal: Principal | None, memo: _Memo) -> None:
        if len(self._memos) >= _MAX_MEMOS:
            self._memos.clear()
        self._memos[(sql, principal)] = memo

    def check(self, sql: str, principal: Principal | None) -> Check:
        """``principal`` None (a shared connection with nobody acting): a statement that reads
        no catalog column runs (a framework's set-up queries); any other is refused."""
        return Check(self, sql, principal)


@dataclass
class _Memo:
    """A checked statement: its trace, the decisions it was judged on, the guard's verdict and
    the plans of its results, valid ``until`` (the client's clock) in catalog ``state``."""

    until: float
    state: tuple[int, int]
    statements: list[Statement]
    decisions: _Decisions
    refusal: GuardRefusal | None
    audited: list[tuple[str, str]]
    plans: dict[tuple[Any, ...], ResultPlan] = field(default_factory=dict)
    """By the statement traced and the result's fields."""
    fingerprint: str | None = None
    """The statement's fingerprint, once a run of it was reported."""


class _Resolution:
    """Drives lookups until the statements and every view they reach are traced."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._pending: Lookup | None = None
        self._rounds = 0
        self._done = False  # traced with everything looked up: what follows uses that trace
        self._views: dict[Source, Lineage] = {}

    def next_lookup(self) -> Lookup | None:
        """The next catalog query to run, or None once everything is traced. After None, the
        trace is final for this query, even if a cache entry it used expires meanwhile."""
        if self._done:
            return None
        catalog = self.session.catalog
        lookup = catalog.next_lookup()
        if lookup is None:
            self.settle()
            lookup = catalog.next_lookup()
        self._done = lookup is None
        if lookup is not None:
            self._rounds += 1
            if self._rounds > _MAX_LOOKUP_ROUNDS:
                raise GuardRefusal("54001", "Veil cannot trace this statement: its names nest too deeply")
        self._pending = lookup
        return lookup

    def feed(self, rows: Iterable[Sequence[Any]]) -> None:
        if self._pending is None:
            raise RuntimeError("feed() without a pending lookup")
        self.session.catalog.feed(self._pending, rows)
        self._pending = None

    def settle(self) -> None:
        """Recompute with what the catalog knows; leaves any new missing names in it."""

    def views_of(self, sources: Iterable[Source]) -> dict[Source, Lineage]:
        """For sources that are view columns: the base lineage (recursively), where traceable."""
        out: dict[Source, Lineage] = {}
        todo = [(s, 0) for s in sources]
        seen: set[Source] = set()
        while todo:
            source, depth = todo.pop()
            if source in seen:
                continue
            seen.add(source)
            relation = self.session.catalog.by_oid(source.relation_oid)
            if not isinstance(relation, Relation) or not relation.is_view:
                continue
            if depth >= _MAX_VIEW_DEPTH:
                out[source] = Lineage(untraceable="views nest too deeply")
                continue
            outputs = self.session.enforcer.view_outputs(relation, self.session.catalog)
            index = source.attnum - 1
            if outputs is None or not 0 <= index < len(outputs):
                out[source] = Lineage(untraceable=f"cannot trace view {relation.name}")
                continue
            lineage = outputs[index][1]
            out[source] = lineage
            todo.extend((s, depth + 1) for s in lineage.sources)
        return out


@dataclass
class _Decisions:
    """Veil's answers for a query's sources, and what they mean for views and derived columns."""

    enforcer: Enforcer
    by_source: dict[Source, ColumnDecision]
    views: dict[Source, Lineage]

    def masked(self, source: Source, depth: int = 0) -> ColumnDecision:
        """The decision that applies to a source's values (a view column's own, or its base's)."""
        decision = self.by_source[source]
        through = self.views.get(source)
        if through is None or decision.reason_kind != "unknown_column" or depth > _MAX_VIEW_DEPTH:
            return decision
        return self.lineage(through, depth + 1) or _unmasked(decision)

    def lineage(self, lineage: Lineage, depth: int = 0) -> ColumnDecision | None:
        """The mask for a lineage, or None when it passes as is."""
        if lineage.untraceable:
            return _untraceable(None)
        decisions = [self.masked(s, depth) for s in lineage.sources]
        masked = [d for d in decisions if d.masked]
        if not masked:
            return None
        if lineage.derived:
            return _full(masked[0])
        algorithms = {_key(d.algorithm) for d in masked}
        return masked[0] if len(algorithms) == 1 else _full(masked[0])


class Check(_Resolution):
    """The guard's side of one query: parse, trace, ask Veil, refuse or let it run."""

    def __init__(self, session: Session, sql: str, principal: Principal | None) -> None:
        super().__init__(session)
        self.principal = principal
        self.query_id = f"q-{os.urandom(10).hex()}"
        self.tool_call = current_tool_call()  # the tool call running this query, if any
        self.statements: list[Statement] = []
        self.refusal: GuardRefusal | None = None
        self.audited: list[tuple[str, str]] = []  # guard mode audit: (what, clause) that ran anyway
        self._decisions: _Decisions | None = None
        self._reported: dict[Column, bool] = {}  # column -> returned unmasked
        self._rows = 0
        self._sql = sql
        self._until = math.inf
        self.memo = session.memo(sql, principal)
        if self.memo is not None:
            self.statements = self.memo.statements
            self._decisions = self.memo.decisions
            self.refusal = self.memo.refusal
            self.audited = list(self.memo.audited)
            self._nodes = ()
            return
        try:
            self._nodes = parse(sql)
        except ParseError as error:
            self._nodes = ()
            self.refusal = GuardRefusal(
                "42601", f"Veil cannot parse this statement, so it was not run: {error}"
            )

    def next_lookup(self) -> Lookup | None:
        if self.refusal is not None or self.memo is not None:
            return None
        return super().next_lookup()

    def settle(self) -> None:
        self.statements = analyze(self._nodes, self.session.catalog)
        catalog = self.session.catalog
        if not (catalog.missing_names or catalog.missing_functions):
            self._views = self.views_of(self._sources())

    def effective(self, statement: Statement) -> Statement:
        """What EXECUTE and FETCH run: the statement they name (untraceable when unknown)."""
        if statement.kind == "execute":
            return self.session.prepared.get(statement.name or "", Statement("unknown"))
        if statement.kind == "fetch":
            return self.session.cursors.get(statement.name or "", Statement("unknown"))
        return statement.inner if statement.inner is not None else statement

    def _sources(self) -> set[Source]:
        sources: set[Source] = set()
        for statement in map(self.effective, self.statements):
            sources.update(use.source for use in statement.uses)
            sources.update(statement.touches)
            for _, lineage in statement.outputs or ():
                sources.update(lineage.sources)
        return sources

    def raise_if_refused(self) -> None:
        """Ask Veil about every column the query reads and refuse it if the guard says so."""
        if self.memo is None and self.refusal is None:
            if self.next_lookup() is not None:
                raise RuntimeError("run every lookup (next_lookup/feed) before raise_if_refused()")
            self._decide(self._sources(), self._views)
            self.refusal = self._guard()
            if self.refusal is None:
                self._remember()
            self._keep()
        if self.refusal is not None:
            raise self.refusal

    def _keep(self) -> None:
        """Memoize this check for the next run of the same statement, when nothing in it
        changes the session (DDL, SET, PREPARE, cursors) and it was judged on Veil's answers."""
        if self._decisions is None or any(
            s.ddl or s.resets_names or s.kind in ("prepare", "execute", "declare", "fetch")
            for s in self.statements
        ):
            return
        catalog = self.session.enforcer.catalog
        until = min(self._until, catalog.now() + catalog.ttl_s)
        self.memo = _Memo(
            until,
            self.session.catalog.state(),
            self.statements,
            self._decisions,
            self.refusal,
            list(self.audited),
        )
        self.session.remember(self._sql, self.principal, self.memo)

    def _remember(self) -> None:
        session = self.session
        for statement in self.statements:
            if statement.resets_names:
                session.catalog.forget_names()
            if statement.ddl:
                session.enforcer.catalog.invalidate()
            if statement.kind == "prepare" and statement.inner is not None:
                session.prepared[statement.name or ""] = statement.inner
            if statement.kind == "declare" and statement.inner is not None:
                session.cursors[statement.name or ""] = statement.inner

    def _decide(
        self, sources: set[Source], views: dict[Source, Lineage], *, planning: bool = False
    ) -> _Decisions:
        """Veil's answers for ``sources`` and the base columns of the views among them (``views``,
        traced when the lookups settled), added to what this check already asked."""
        wanted = sorted(sources | {s for lin in views.values() for s in lin.sources}, key=_source_key)
        previous = self._decisions.by_source if self._decisions is not None else {}
        missing = [s for s in wanted if s not in previous]
        enforcer = self.session.enforcer
        if missing and self.principal is None:
            if planning:  # sources only the server's lineage named: nobody to ask for, so masked
                answers = [_untraceable(enforcer.column(s)) for s in missing]
            else:
                raise GuardRefusal(
                    "42501",
                    "Veil: this connection has no principal; "
                    "run the query inside veil_sdk.psycopg.acting_as()",
                )
        elif missing:
            answers, until = enforcer.client.decide_until(
                self.principal,  # type: ignore[arg-type]  # not None when anything is missing
                [enforcer.column(s) for s in missing],
                query_id=self.query_id,
                mask_ttl=enforcer.mask_ttl,
            )
            self._until = min(self._until, until)
        else:
            answers = []
        by_source = {**previous, **dict(zip(missing, answers, strict=True))}
        all_views = {**(self._decisions.views if self._decisions is not None else {}), **views}
        self._decisions = _Decisions(enforcer, by_source, all_views)
        return self._decisions

    def _guard(self) -> GuardRefusal | None:
        assert self._decisions is not None
        enforcer = self.session.enforcer
        refuse = enforcer.guard_mode == "refuse"
        for statement in map(self.effective, self.statements):
            for use in statement.uses:
                decision = self._decisions.masked(use.source)
                if not decision.masked:
                    continue
                column = enforcer.column(use.source)
                if not refuse:
                    self.audited.append((column.label(), use.clause))
                    continue
                return GuardRefusal(
                    "42501",
                    f"Veil: {use.source.label()} is masked for you, so it cannot be used in {use.clause}. "
                    f"Ask for access: {enforcer.request_link([column])}",
                    columns=[column],
                    clause=use.clause,
                )
            for what, clause in statement.opaque:
                if refuse:
                    return GuardRefusal(
                        "42501",
                        f"Veil cannot check this query ({what} in {clause}), so it was not run.",
                        clause=clause,
                    )
                self.audited.append((what, clause))
            if statement.copy_to:
                for name, lineage in statement.outputs or [("?", Lineage(untraceable="COPY"))]:
                    if self._decisions.lineage(lineage) is not None:
                        return GuardRefusal(
                            "42501",
                            f"Veil: COPY would return column {name!r} masked for you; COPY TO is refused "
                            "when it would return a masked column (select it instead, to get it masked).",
                            clause="COPY ... TO",
                        )
        return None

    # --- results ------------------------------------------------------------------------------

    def masks_any(self) -> bool:
        """Whether any column this statement reads is masked for its principal (or could not be
        decided): then a server error that quotes a value (SQLSTATE classes 22 and 23) may quote
        a masked one, and must not reach the principal as is."""
        decisions = self._decisions
        return decisions is None or any(d.masked for d in decisions.by_source.values())

    def cached_plan(self, index: int, fields: Sequence[Field]) -> ResultPlan | None:
        """The plan an earlier run of this statement made for a result of these fields, if it is
        still good (a repeated query skips planning altogether)."""
        memo = self.memo
        if memo is None or not 0 <= index < len(self.statements):
            return None
        return memo.plans.get((id(self.effective(self.statements[index])), *fields))

    def result(self, index: int, fields: Sequence[Field]) -> Planning:
        """Plan the masking of the result of statement ``index`` (0-based, in the SQL's order)."""
        statement = self.effective(self.statements[index]) if 0 <= index < len(self.statements) else None
        return Planning(self, statement, list(fields))

    def record(self, plan: ResultPlan, rows: int) -> None:
        """Count a result's rows and columns towards the query's access event: a column counts as
        unmasked only if every result column it reached was returned unmasked."""
        self._rows += rows
        for column, clear in plan.columns:
            self._reported[column] = self._reported.get(column, True) and clear

    def report(self, row_count: int | None = None) -> None:
        """Queue the query's one access event (rows counted by ``record`` unless given), with the
        statement's fingerprint and the tool call that ran it (``origin.tool_call``). In audit
        mode, a query the guard would have refused carries what it would have said."""
        if self.principal is None:
            return
        unmasked = [c for c, clear in self._reported.items() if clear]
        masked = [c for c, clear in self._reported.items() if not clear]
        rows = self._rows if row_count is None else row_count
        guard = None
        if self.audited:
            what, clause = self.audited[0]
            guard = {"outcome": "audited", "clause": clause, "message": f"{what} used in {clause}"}
        self.session.enforcer.client.report(
            self.principal,
            self.query_id,
            unmasked,
            masked,
            rows,
            guard=guard,
            fingerprint=self.fingerprint() or None,
            tool_call=self.tool_call,
        )

    def report_refusal(self, refusal: GuardRefusal) -> None:
        """Queue the access event of a query the guard refused (no rows), for the audit log."""
        if self.principal is None:
            return
        guard = {"outcome": "refused", "clause": refusal.clause or "parse", "message": refusal.message}
        self.session.enforcer.client.report(
            self.principal,
            self.query_id,
            [],
            refusal.columns,
            0,
            guard=guard,
            fingerprint=self.fingerprint() or None,
            tool_call=self.tool_call,
        )

    def fingerprint(self) -> str:
        """The statement's fingerprint for its access event (no literal in it), worked out once
        per memoized statement: the data path reports the same few statements again and again."""
        memo = self.memo
        if memo is not None and memo.fingerprint is not None:
            return memo.fingerprint
        fingerprint = statement_fingerprint(self._sql)
        if memo is not None:
            memo.fingerprint = fingerprint
        return fingerprint

    def skip(self) -> None:
        """No guard for this query: the session's transaction has failed, so the server refuses
        every statement but ROLLBACK and nothing can come back (anything that did is masked)."""
        self.statements = []
        self._decisions = _Decisions(self.session.enforcer, {}, {})


class Planning(_Resolution):
    """The masking plan of one result, from RowDescription's sources and the statement's trace."""

    def __init__(self, check: Check, statement: Statement | None, fields: list[Field]) -> None:
        super().__init__(check.session)
        self.check = check
        self.statement = statement
        self.fields = fields
        self._lineages: list[Lineage] = []
        self._offline = False
        self._key = (id(statement), *fields)
        memo = check.memo
        self._cached = memo.plans.get(self._key) if memo is not None else None

    def next_lookup(self) -> Lookup | None:
        return None if self._cached is not None else super().next_lookup()

    def _known(self, lineage: Lineage) -> bool:
        return all(
            isinstance(self.session.catalog.shared.relation(s.relation_oid), Relation)
            for s in lineage.sources
        )

    def settle(self) -> None:
        catalog = self.session.catalog
        outputs = self.statement.outputs if self.statement is not None else None
        traced = outputs if outputs is not None and len(outputs) == len(self.fields) else None
        lineages = []
        for position, fld in enumerate(self.fields):
            if fld.table_oid:
                relation = catalog.by_oid(fld.table_oid)
                name = relation.column(fld.attnum) if isinstance(relation, Relation) else None
                if isinstance(relation, Relation) and name is not None:
                    source = Source(relation.schema, relation.name, name, relation.oid, fld.attnum)
                    lineages.append(Lineage(frozenset({source}), False, None))
                else:
                    lineages.append(
                        Lineage(untraceable=f"no column {fld.attnum} in relation {fld.table_oid}")
                    )
            elif traced is not None:
                lineages.append(traced[position][1])
            else:
                lineages.append(Lineage(untraceable="the statement's result columns could not be traced"))
        self._lineages = lineages
        if not (catalog.missing_oids or catalog.missing_names or catalog.missing_functions):
            self._views = self.views_of(s for lin in lineages for s in lin.sources)

    def give_up(self) -> None:
        """Plan without the lookups still missing (the connection cannot run them now): whatever
        they were needed for is masked as untraceable."""
        self._offline = True

    def plan(self) -> ResultPlan:
        """The plan (asks Veil about any source the check did not ask about)."""
        if self._cached is not None:
            return self._cached
        plan = self._plan()
        memo = self.check.memo
        if memo is not None and not self._offline:
            memo.plans[self._key] = plan
            memo.until = min(memo.until, self.check._until)
        return plan

    def _plan(self) -> ResultPlan:
        if self._offline:
            catalog = self.session.catalog
            catalog.missing_names.clear()
            catalog.missing_oids.clear()
            catalog.missing_functions.clear()
            self._lineages = [
                lin
                if lin.untraceable is None and self._known(lin)
                else Lineage(untraceable="catalog not looked up")
                for lin in self._lineages
            ]
        elif self.next_lookup() is not None:
            raise RuntimeError("run every lookup (next_lookup/feed) before plan()")
        check = self.check
        if check._decisions is None:
            raise RuntimeError("raise_if_refused() must run before the results are planned")
        decisions = check._decide(
            {s for lin in self._lineages for s in lin.sources}, self._views, planning=True
        )
        maskers: list[Masker | None] = []
        applied: list[ColumnDecision] = []
        read: list[tuple[Column, bool]] = []
        enforcer = self.session.enforcer
        for lineage in self._lineages:
            decision = decisions.lineage(lineage)
            if decision is None:
                sources = sorted(lineage.sources, key=_source_key)
                decision = decisions.masked(sources[0]) if len(sources) == 1 else _constant()
            maskers.append(decision.masker)
            applied.append(decision)
            read.extend((enforcer.column(s), decision.masker is None) for s in lineage.sources)
        return ResultPlan(tuple(maskers), tuple(applied), tuple(read))


# --- Decisions made here ------------------------------------------------------------------------


_NO_COLUMN = Column("", "", "", "", "")


def _full(like: ColumnDecision) -> ColumnDecision:
    return ColumnDecision(like.column, "mask", FULL_ALGORITHM, like.reason, None, None, 0, _FULL_MASKER)


def _untraceable(column: Column | None) -> ColumnDecision:
    return ColumnDecision(
        column or _NO_COLUMN, "mask", FULL_ALGORITHM, _UNTRACEABLE_REASON, None, None, 0, _FULL_MASKER
    )


def _unmasked(like: ColumnDecision) -> ColumnDecision:
    return ColumnDecision(like.column, "unmask", None, like.reason, like.semantic_type, None, 0, None)


def _constant() -> ColumnDecision:
    return ColumnDecision(
        _NO_COLUMN, "unmask", None, MappingProxyType({"kind": "constant"}), None, None, 0, None
    )


def _key(algorithm: Mapping[str, Any] | None) -> str:
    return repr(sorted((algorithm or {}).items()))


def _source_key(source: Source) -> tuple[str, str, str]:
    return (source.schema, source.table, source.column)
