"""What the data path knows of the database it enforces on: relations by OID and by name, and
which functions are PostgreSQL's own.

Nothing here talks to PostgreSQL. The caller runs the ``Lookup`` queries this module writes on
the session's own connection (so ``search_path``, temporary tables and permissions are the
session's) and feeds the rows back. Relations by OID are global to a database, so they are kept
in a ``CatalogCache`` shared by every session to one target, for ``ttl_s`` seconds: a table
dropped and recreated gets a new OID and so a fresh entry at once; a column renamed by another
session is seen when the entry expires, and at once when the rename went through this data path
(the analysis reports DDL, and the session drops what it cached). Names resolve through the
session's ``search_path``, so a session keeps its own name -> OID map.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["FIRST_USER_OID", "CatalogCache", "Lookup", "Relation", "SessionCatalog", "qualified"]

FIRST_USER_OID = 16384
"""PostgreSQL's FirstNormalObjectId: objects made by initdb (the built-ins) have smaller OIDs."""

VIEW_KINDS = frozenset("vm")  # view, materialized view


class Lookup(NamedTuple):
    """A catalog query to run on the session's connection, as is (no parameters, so the proxy can
    send it as a simple query). Each row has one text column holding a JSON object; the rows go
    back to ``SessionCatalog.feed``."""

    kind: str  # "names", "oids" or "functions"
    sql: str


@dataclass(frozen=True, slots=True)
class Relation:
    """A table, view or other relation: its columns by attribute number (dropped ones absent)."""

    oid: int
    schema: str
    name: str
    kind: str  # pg_class.relkind
    columns: tuple[tuple[int, str], ...]  # (attnum, name), in attnum order
    view_sql: str | None = None  # pg_get_viewdef for views and materialized views

    @property
    def is_view(self) -> bool:
        return self.kind in VIEW_KINDS

    def column_names(self) -> list[str]:
        return [name for _, name in self.columns]

    def column(self, attnum: int) -> str | None:
        for number, name in self.columns:
            if number == attnum:
                return name
        return None


# One row per wanted relation, as JSON: what was asked for ("key") and, when it exists, the
# relation. Missing relations come back with a null oid.
_RELATIONS_SQL = """
SELECT pg_catalog.json_build_object(
  'key', w.key, 'oid', c.oid::int8, 'schema', n.nspname, 'name', c.relname, 'kind', c.relkind,
  'attnums', ARRAY(SELECT a.attnum FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
  'attnames', ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
  'view_sql', CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END)::text
FROM pg_catalog.unnest({keys}) AS w(key)
LEFT JOIN pg_catalog.pg_class c ON c.oid = {resolve}
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
""".strip()

# A function name is PostgreSQL's own when every function of that name is (so a user's function
# that shadows a built-in through search_path, or overloads it, makes the name untraceable).
_FUNCTIONS_SQL = """
SELECT pg_catalog.json_build_object(
  'key', w.key,
  'builtin', pg_catalog.count(p.oid) > 0 AND pg_catalog.bool_and(p.oid < {first_user_oid}))::text
FROM pg_catalog.unnest({keys}) AS w(key)
LEFT JOIN pg_catalog.pg_proc p ON p.proname = w.key
GROUP BY w.key
""".strip()


def _text_array(values: Iterable[str]) -> str:
    """A text[] literal that no name can break out of, whatever the server's string settings:
    each value travels hex-encoded."""
    items = ", ".join(
        f"pg_catalog.convert_from(pg_catalog.decode('{v.encode().hex()}', 'hex'), 'UTF8')" for v in values
    )
    return f"ARRAY[{items}]::text[]"


def quote_ident(name: str) -> str:
    """PostgreSQL's quote_ident: always quoted, so any name (upper case, keywords) round-trips."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str | None, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}" if schema else quote_ident(name)


def _relation_from_json(item: dict[str, Any]) -> Relation | None:
    if item.get("oid") is None:
        return None
    columns = tuple(zip(item["attnums"], item["attnames"], strict=True))
    return Relation(int(item["oid"]), item["schema"], item["name"], item["kind"], columns, item["view_sql"])


class CatalogCache:
    """Relations by OID and built-in function names, shared by every session to one database.

    Thread-safe. ``ttl_s`` bounds how long a change made outside this data path (a column renamed,
    a function created) can go unseen; ``invalidate`` forgets everything at once.
    """

    def __init__(self, ttl_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._relations: dict[int, tuple[float, Relation | None]] = {}
        self._functions: dict[str, tuple[float, bool]] = {}
        self.generation = 0
        """Moves at every ``invalidate``: what was derived from the cache before is stale."""

    @property
    def ttl_s(self) -> float:
        return self._ttl

    def now(self) -> float:
        return self._clock()

    def relation(self, oid: int) -> Relation | bool | None:
        """The relation, None when it does not exist, False when not known (look it up)."""
        with self._lock:
            entry = self._relations.get(oid)
        if entry is None or entry[0] <= self._clock():
            return False
        return entry[1]

    def builtin(self, name: str) -> bool | None:
        """Whether a function name is PostgreSQL's own; None when not known (look it up)."""
        with self._lock:
            entry = self._functions.get(name)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def store_relations(self, relations: Iterable[tuple[int, Relation | None]]) -> None:
        expires = self._clock() + self._ttl
        with self._lock:
            for oid, relation in relations:
                self._relations[oid] = (expires, relation)

    def store_functions(self, answers: Iterable[tuple[str, bool]]) -> None:
        expires = self._clock() + self._ttl
        with self._lock:
            for name, builtin in answers:
                self._functions[name] = (expires, builtin)

    def invalidate(self) -> None:
        with self._lock:
            self._relations.clear()
            self._functions.clear()
            self.generation += 1


class SessionCatalog:
    """One session's view of the catalog: its names (through its search_path) over the shared
    cache. Collects what it was asked and did not know, so the caller can look it all up in one
    round trip per kind and run the analysis again."""

    def __init__(self, shared: CatalogCache) -> None:
        self.shared = shared
        self._names: dict[str, int | None] = {}  # qualified name as written -> OID (None: no such)
        self.missing_names: set[str] = set()
        self.missing_oids: set[int] = set()
        self.missing_functions: set[str] = set()
        self.generation = 0
        """Moves at every ``forget_names``."""

    # --- what the analysis asks ---------------------------------------------------------------

    def by_name(self, schema: str | None, name: str) -> Relation | bool | None:
        """The relation a name resolves to, None if none, False if not known yet."""
        key = qualified(schema, name)
        if key not in self._names:
            self.missing_names.add(key)
            return False
        oid = self._names[key]
        return None if oid is None else self.by_oid(oid)

    def by_oid(self, oid: int) -> Relation | bool | None:
        found = self.shared.relation(oid)
        if found is False:
            self.missing_oids.add(oid)
        return found

    def builtin(self, name: str) -> bool | None:
        found = self.shared.builtin(name)
        if found is None:
            self.missing_functions.add(name)
        return found

    # --- the caller's side --------------------------------------------------------------------

    def next_lookup(self) -> Lookup | None:
        if self.missing_names:
            keys = _text_array(sorted(self.missing_names))
            return Lookup("names", _RELATIONS_SQL.format(keys=keys, resolve="pg_catalog.to_regclass(w.key)"))
        if self.missing_oids:
            keys = _text_array(str(oid) for oid in sorted(self.missing_oids))
            return Lookup("oids", _RELATIONS_SQL.format(keys=keys, resolve="w.key::oid"))
        if self.missing_functions:
            keys = _text_array(sorted(self.missing_functions))
            return Lookup("functions", _FUNCTIONS_SQL.format(keys=keys, first_user_oid=FIRST_USER_OID))
        return None

    def feed(self, lookup: Lookup, rows: Iterable[Sequence[Any]]) -> None:
        """Store the answer to ``lookup`` (rows of one JSON text column). Whatever was asked for
        and not answered counts as absent, so the analysis cannot ask for it again and again."""
        items = [json.loads(row[0]) for row in rows]
        if lookup.kind == "functions":
            answered = {item["key"]: bool(item["builtin"]) for item in items}
            self.shared.store_functions((n, answered.get(n, False)) for n in self.missing_functions)
            self.missing_functions.clear()
            return
        relations = {item["key"]: _relation_from_json(item) for item in items}
        if lookup.kind == "names":
            for key in self.missing_names:
                relation = relations.get(key)
                self._names[key] = None if relation is None else relation.oid
            self.missing_names.clear()
            found: list[tuple[int, Relation | None]] = [
                (r.oid, r) for r in relations.values() if r is not None
            ]
        else:
            found = [(oid, relations.get(str(oid))) for oid in self.missing_oids]
            self.missing_oids.clear()
        self.shared.store_relations(found)

    def forget_names(self) -> None:
        """After a statement that may change what names mean (SET, DDL): resolve them afresh."""
        self._names.clear()
        self.generation += 1

    def state(self) -> tuple[int, int]:
        """Changes whenever names or relations cached before may mean something else now."""
        return (self.shared.generation, self.generation)
