"""A small stand-in for ``veil_sdk.datapath`` with the same interface (``Enforcer.session()``,
``Session.check()``, ``Check`` and ``Planning`` handing out catalog lookups, ``record`` and
``report``), whose masking is fixed, so the protocol tests do not depend on Veil's policy. The
real data path with a real Veil is tested in test_veil.py.

It asks for real catalog lookups (on the session and, mid-result, on the shared catalog
connections) and masks by the names the catalog gives back, so the proxy's side is exercised.
Masked: any column named in ``MASKED`` (an expression mentioning one, too). Refused: a masked
column's name after WHERE (42501), SQL pglast cannot parse (42601), a COPY TO that could
include a masked column (42501).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pglast

MASKED = frozenset({"email", "phone"})
MASK = "****"
_COPY_TO = re.compile(r"^\s*copy\b.*\bto\b", re.I | re.S)
_COPY_LEAKS = re.compile(r"\b(email|phone)\b|\*|copy\s+\w*\s*customers\s+to", re.I)


class Field(NamedTuple):
    name: str
    table_oid: int
    attnum: int
    type_oid: int


class CatalogLookup(NamedTuple):
    sql: str
    params: tuple[Any, ...]


class GuardRefusal(Exception):
    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


def _masker(value: object) -> str | None:
    return None if value is None else MASK


@dataclass
class ResultPlan:
    maskers: tuple[Any, ...]
    masked_any: bool


@dataclass
class Report:
    principal: Any
    sql: str
    rows: int


class _Planning:
    def __init__(self, check: _Check, index: int, fields: list[Field]) -> None:
        self._check, self._index, self._fields = check, index, fields
        self._pending = [f for f in fields if f.table_oid]
        self._names: dict[tuple[int, int], str] = {}
        self._asked: Field | None = None

    def next_lookup(self) -> CatalogLookup | None:
        if not self._pending:
            return None
        self._asked = self._pending.pop()
        return CatalogLookup(
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attnum = %s",
            (self._asked.table_oid, self._asked.attnum),
        )

    def feed(self, rows: list[tuple[Any, ...]]) -> None:
        assert self._asked is not None
        if rows:
            self._names[(self._asked.table_oid, self._asked.attnum)] = str(rows[0][0])

    def give_up(self) -> None:
        self._pending.clear()

    def plan(self) -> ResultPlan:
        maskers: list[Any] = []
        for f in self._fields:
            if not f.table_oid:  # an expression: masked when it mentions a masked column anywhere
                mentions = re.search(r"\b(email|phone)\b", self._check.sql, re.I)
                maskers.append(_masker if mentions else None)
            else:
                name = self._names.get((f.table_oid, f.attnum))
                maskers.append(_masker if name is None or name in self._check.masked() else None)
        return ResultPlan(tuple(maskers), any(m is not None for m in maskers))


class _Check:
    memo = None  # never memoized here: every check runs raise_if_refused off the event loop
    refusal = None

    def __init__(self, enforcer: Enforcer, sql: str, principal: Any) -> None:
        self.enforcer, self.sql, self.principal = enforcer, sql, principal
        self._lookups = [CatalogLookup("SELECT pg_catalog.current_setting('search_path')", ())]
        self.search_path: str | None = None
        self.rows = 0

    def masked(self) -> frozenset[str]:
        return MASKED - self.enforcer.unmasked.get(self.principal.id, frozenset())

    def next_lookup(self) -> CatalogLookup | None:
        return self._lookups.pop() if self._lookups else None

    def feed(self, rows: list[tuple[Any, ...]]) -> None:
        self.search_path = str(rows[0][0])

    def raise_if_refused(self) -> None:
        try:
            pglast.parse_sql(self.sql)
        except pglast.parser.ParseError as exc:
            raise GuardRefusal("42601", f"cannot parse: {exc}") from None
        if any(re.search(rf"\bwhere\b[^;]*\b{name}\b", self.sql, re.I) for name in self.masked()):
            raise GuardRefusal(
                "42501", "a masked column is used in WHERE: request access at http://veil/requests"
            )
        if _COPY_TO.search(self.sql) and _COPY_LEAKS.search(self.sql):
            raise GuardRefusal("42501", "COPY would send masked columns")

    def skip(self) -> None:
        self._lookups.clear()

    def masks_any(self) -> bool:
        return any(re.search(rf"\b{name}\b", self.sql, re.I) for name in self.masked()) or "*" in self.sql

    def cached_plan(self, index: int, fields: list[Field]) -> ResultPlan | None:
        return None

    def result(self, index: int, fields: list[Field]) -> _Planning:
        return _Planning(self, index, fields)

    def record(self, plan: ResultPlan, rows: int) -> None:
        self.rows += rows

    def report(self) -> None:
        with self.enforcer.lock:
            self.enforcer.reports.append(Report(self.principal, self.sql, self.rows))

    def report_refusal(self, refusal: GuardRefusal) -> None:
        with self.enforcer.lock:
            self.enforcer.refusals.append(Report(self.principal, self.sql, 0))


@dataclass
class Enforcer:
    client: Any
    instance: str
    database: str
    guard_mode: str = "refuse"
    request_url: str | None = None
    reports: list[Report] = field(default_factory=list)
    refusals: list[Report] = field(default_factory=list)
    unmasked: dict[str, frozenset[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def session(self) -> Enforcer:  # a session holds nothing of its own here
        return self

    def check(self, sql: str, principal: Any) -> _Check:
        return _Check(self, sql, principal)
