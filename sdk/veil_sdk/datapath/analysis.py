"""Trace a SQL statement with PostgreSQL's own parser (pglast): which relation columns each
result column reads, and every other place a column is used (the inference guard's input).

The server's RowDescription already names the source of each plain column reference (even
through subqueries and CTEs); this module answers for the rest (expressions, aggregates, set
operations, scalar subqueries) and finds the uses the server never reports: a column in
``WHERE``, ``JOIN ... ON``, ``GROUP BY``, ``ORDER BY`` or inside a function reveals something
of its values even when the column itself is masked in the output.

Everything fails closed. A name that cannot be resolved, a function that is not PostgreSQL's own
(it may read any table), a statement form this module does not model: the affected result
columns are ``untraceable`` (masked), and what cannot be seen outside the select list is listed
as ``opaque`` for the guard. Resolution is conservative: an ambiguous unqualified name counts as
a use of every column it could mean.

The analysis is a pure function of the SQL and a ``SessionCatalog``. When the catalog does not
know a name yet, the catalog records it; the caller looks everything up in one round trip and
runs the analysis again (see ``enforce``).

Why one module over 600 lines: ``_Analyzer`` is one recursive walk over pglast's tree; the handler
of each node kind calls the others through the same stack of scopes, so splitting it by node kind
would scatter one recursion over several files without making any part readable on its own.
"""

# pglast types every field of a parse node as optional; the grammar guarantees the fields read here
# (a set operation has both arms, a RangeVar a name), so these checks would only add noise:
# mypy: disable-error-code="index, arg-type, operator, union-attr"

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pglast import ast, enums, parse_sql
from pglast.parser import ParseError

from veil_sdk.datapath.catalog import Relation, SessionCatalog

__all__ = ["Lineage", "ParseError", "Source", "Statement", "Use", "analyze", "parse"]

SYSTEM_COLUMNS = frozenset({"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid", "oid"})

# Built-ins that run SQL given as text or read whole tables by name: as opaque as a user's function.
SQL_RUNNING_BUILTINS = frozenset(
    {
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "schema_to_xml",
        "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xmlschema",
        "database_to_xml_and_xmlschema",
        "ts_stat",
        "pg_read_file",
        "pg_read_binary_file",
        "lo_get",
        "lo_export",
        "dblink",
    }
)

# Clause names, as the guard's messages say them.
SELECT_LIST = "an expression in the select list"
WHERE = "WHERE"
JOIN_ON = "JOIN ... ON"
JOIN_USING = "JOIN ... USING"
GROUP_BY = "GROUP BY"
HAVING = "HAVING"
ORDER_BY = "ORDER BY"
DISTINCT_ON = "DISTINCT ON"
PARTITION_BY = "a window's PARTITION BY"
WINDOW_ORDER_BY = "a window's ORDER BY"
FILTER = "an aggregate's FILTER"
LIMIT = "LIMIT/OFFSET"
FROM_FUNCTION = "a function in FROM"


@dataclass(frozen=True, slots=True)
class Source:
    """A column of a table or view, as the catalog names it."""

    schema: str
    table: str
    column: str
    relation_oid: int
    attnum: int

    def label(self) -> str:
        return f"{self.schema}.{self.table}.{self.column}"


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where one result column's values come from.

    ``derived``: computed from its sources (masked in full if any source is masked) rather than
    one of their values passed as is. ``untraceable``: why its sources cannot be known (masked).
    """

    sources: frozenset[Source] = frozenset()
    derived: bool = True
    untraceable: str | None = None

    def merged(self, other: Lineage, *, derived: bool) -> Lineage:
        return Lineage(
            self.sources | other.sources,
            derived or self.derived or other.derived,
            self.untraceable or other.untraceable,
        )


CONSTANT = Lineage()


@dataclass(frozen=True, slots=True)
class Use:
    """A column read somewhere other than as a plain result column."""

    source: Source
    clause: str


@dataclass
class Statement:
    """What one statement reads, returns and changes.

    ``outputs`` is None when the statement returns rows this module cannot trace (then every
    result column without a server-reported source is masked). ``opaque`` lists what the guard
    cannot see (a user's function in WHERE, a DO block): (what, clause).
    """

    kind: str
    outputs: list[tuple[str, Lineage]] | None = None
    uses: list[Use] = field(default_factory=list)
    opaque: list[tuple[str, str]] = field(default_factory=list)
    resets_names: bool = False
    ddl: bool = False
    touches: list[Source] = field(default_factory=list)
    """Every column of a table the statement writes: a failed write's message may quote the
    whole row ("Failing row contains ..."), so their decisions decide what the error may say."""
    name: str | None = None  # PREPARE/EXECUTE/DECLARE/FETCH: the statement or cursor name
    inner: Statement | None = None  # PREPARE/DECLARE: the statement they hold
    copy_to: bool = False


def parse(sql: str) -> tuple[Any, ...]:
    """The raw statements of ``sql``; raises ``ParseError`` with the server's parser's message."""
    return tuple(raw.stmt for raw in parse_sql(sql))


def analyze(statements: Iterable[Any], catalog: SessionCatalog) -> list[Statement]:
    """Trace parsed statements. Names the catalog does not know yet are left in its ``missing_*``
    sets: when any are, look them up and call again (the result of this call is incomplete)."""
    return [_Analyzer(catalog).statement(node) for node in statements]


def analyze_view(view_sql: str, catalog: SessionCatalog) -> list[tuple[str, Lineage]] | None:
    """The outputs of a view's definition (its uses are the view owner's, not the reader's)."""
    try:
        nodes = parse(view_sql)
    except ParseError:
        return None
    if len(nodes) != 1:
        return None
    return _Analyzer(catalog).statement(nodes[0]).outputs


# --- Scopes -------------------------------------------------------------------------------------


@dataclass
class _Item:
    """A FROM item visible by a name: a relation, a subquery, a CTE, a function, a join alias."""

    refname: str | None
    schema: str | None
    columns: list[tuple[str, Lineage]]
    open: Lineage | None = None  # columns unknown: any name may mean one, read as this


@dataclass
class _Level:
    items: list[_Item] = field(default_factory=list)
    star: list[tuple[str, Lineage]] = field(default_factory=list)
    star_known: bool = True


_Ctes = dict[str, list[tuple[str, Lineage]]]


def _union(lineages: Iterable[Lineage], *, derived: bool) -> Lineage:
    out = Lineage(derived=derived)
    for lineage in lineages:
        out = out.merged(lineage, derived=derived)
    return out


def _strings(nodes: Iterable[Any] | None) -> list[str]:
    return [str(n.sval) for n in nodes or () if isinstance(n, ast.String)]


def _children(node: Any) -> Iterator[Any]:
    for slot in node.__slots__:
        value = getattr(node, slot, None)
        if isinstance(value, ast.Node):
            yield value
        elif isinstance(value, tuple):
            stack = list(value)
            while stack:
                item = stack.pop(0)
                if isinstance(item, ast.Node):
                    yield item
                elif isinstance(item, tuple):
                    stack[:0] = item


def _renamed(columns: list[tuple[str, Lineage]], alias: ast.Alias | None) -> list[tuple[str, Lineage]]:
    names = _strings(alias.colnames) if alias is not None else []
    return [(names[i] if i < len(names) else name, lin) for i, (name, lin) in enumerate(columns)]


class _Analyzer:
    def __init__(self, catalog: SessionCatalog) -> None:
        self.catalog = catalog
        self.uses: list[Use] = []
        self.opaque: list[tuple[str, str]] = []
        self.touches: list[Source] = []
        self.resets_names = False

    # --- statements ---------------------------------------------------------------------------

    def statement(self, node: Any) -> Statement:
        kind = type(node).__name__
        result = self._statement(node)
        result.uses = self.uses
        result.opaque = self.opaque
        result.touches = self.touches
        result.resets_names = result.resets_names or self.resets_names or result.ddl
        if result.kind == "":
            result.kind = kind
        return result

    def _statement(self, node: Any) -> Statement:
        if isinstance(node, ast.SelectStmt):
            selected = self.select(node, [], {})
            if node.intoClause is not None:  # SELECT ... INTO a new table: the values go somewhere
                self._use_all(selected, "SELECT INTO")
                return Statement("select_into", ddl=True)
            return Statement("query", selected)
        if isinstance(node, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt):
            return Statement("modify", self._modify(node))
        if isinstance(node, ast.CopyStmt):
            if node.is_from:
                return Statement("copy_from")
            if node.query is not None:
                copied = self._statement(node.query).outputs
            else:
                copied = self._relation_columns(node.relation, _strings(node.attlist))
            return Statement("copy_to", copied, copy_to=True)
        if isinstance(node, ast.ExplainStmt):
            self._statement(node.query)  # its uses count: EXPLAIN ANALYZE reports row counts
            return Statement("explain", [("QUERY PLAN", CONSTANT)])
        if isinstance(node, ast.PrepareStmt):
            return Statement("prepare", name=node.name, inner=_Analyzer(self.catalog).statement(node.query))
        if isinstance(node, ast.ExecuteStmt):
            for param in node.params or ():
                self.expr(param, [], {}, "EXECUTE's parameters")
            return Statement("execute", name=node.name)
        if isinstance(node, ast.DeclareCursorStmt):
            return Statement(
                "declare", name=node.portalname, inner=_Analyzer(self.catalog).statement(node.query)
            )
        if isinstance(node, ast.FetchStmt):
            return Statement("fetch", name=node.portalname)
        if isinstance(node, ast.CreateTableAsStmt):
            outputs = self._statement(node.query).outputs or []
            self._use_all(outputs, "CREATE TABLE AS")
            return Statement("create_table_as", ddl=True)
        if isinstance(node, ast.VariableSetStmt | ast.DiscardStmt):
            return Statement("set", resets_names=True)
        if isinstance(node, ast.VariableShowStmt):
            return Statement("show", [(str(node.name), CONSTANT)])
        if isinstance(node, ast.TransactionStmt | ast.ClosePortalStmt | ast.DeallocateStmt):
            return Statement("transaction")
        if isinstance(node, ast.DoStmt | ast.CallStmt):
            self.opaque.append(("DO" if isinstance(node, ast.DoStmt) else "CALL", "a procedure or DO block"))
            return Statement("code")
        # Anything else (DDL and the like): no rows to trace, and names may mean something else now.
        return Statement("", ddl=True)

    def _modify(self, node: Any) -> list[tuple[str, Lineage]] | None:
        level = _Level()
        target = self._range_var(node.relation, {})
        level.items.append(target)
        self.touches.extend(source for _, lineage in target.columns for source in lineage.sources)
        ctes = self._with(node.withClause, [], {})
        if isinstance(node, ast.InsertStmt):
            if node.selectStmt is not None:
                # Values copied into a table leave the result: a use, not an output.
                self._use_all(self.select(node.selectStmt, [], ctes), "INSERT")
            # Writing a column is a use of it too: a unique or check constraint on it answers
            # whether a guessed value exists.
            written = [item.name for item in node.cols or ()]
            self._assigned(target, written or [name for name, _ in target.columns], "INSERT")
            conflict = node.onConflictClause
            if conflict is not None:
                excluded = _Item("excluded", None, target.columns, target.open)
                scope = [_Level([target, excluded])]
                self._assigned(
                    target, [item.name for item in conflict.targetList or ()], "INSERT ... ON CONFLICT"
                )
                for item in conflict.targetList or ():
                    self.expr(item.val, scope, ctes, "INSERT ... ON CONFLICT")
                self.expr(conflict.whereClause, scope, ctes, "INSERT ... ON CONFLICT")
        else:
            extra = node.fromClause if isinstance(node, ast.UpdateStmt) else node.usingClause
            for item in extra or ():
                self._from_item(item, level, [], ctes)
            scope = [level]
            assignments = getattr(node, "targetList", None) or ()
            self._assigned(target, [item.name for item in assignments], "UPDATE ... SET")
            for item in assignments:
                self.expr(item.val, scope, ctes, "UPDATE ... SET")
            self.expr(node.whereClause, scope, ctes, WHERE)
        returning = node.returningClause
        if returning is None:
            return None
        return self._targets(returning.exprs, [level], ctes)

    # --- SELECT -------------------------------------------------------------------------------

    def select(self, node: ast.SelectStmt, outer: list[_Level], ctes: _Ctes) -> list[tuple[str, Lineage]]:
        ctes = self._with(node.withClause, outer, ctes)
        if node.op != enums.SetOperation.SETOP_NONE:
            left = self.select(node.larg, outer, ctes)
            right = self.select(node.rarg, outer, ctes)
            if len(left) != len(right):
                outputs = [(name, Lineage(untraceable="set operation of unequal width")) for name, _ in left]
            else:
                outputs = [
                    (ln, ll.merged(rl, derived=False)) for (ln, ll), (_, rl) in zip(left, right, strict=True)
                ]
            if node.op != enums.SetOperation.SETOP_UNION or not node.all:
                # UNION (distinct), INTERSECT and EXCEPT compare values: a probe with a constant row.
                self._use_all(outputs, node.op.name.removeprefix("SETOP_"))
            self._positional(node.sortClause, outputs, [], ctes, ORDER_BY, sort=True)
            self.expr(node.limitCount, outer, ctes, LIMIT)
            self.expr(node.limitOffset, outer, ctes, LIMIT)
            return outputs
        if node.valuesLists:
            rows = [[self.expr(value, outer, ctes, "VALUES") for value in row] for row in node.valuesLists]
            width = max(len(row) for row in rows)
            return [
                (f"column{i + 1}", _union((row[i] for row in rows if i < len(row)), derived=True))
                for i in range(width)
            ]
        level = _Level()
        for item in node.fromClause or ():
            self._from_item(item, level, outer, ctes)
        scope = [*outer, level]
        outputs = self._targets(node.targetList, scope, ctes, level)
        self.expr(node.whereClause, scope, ctes, WHERE)
        self._positional(node.groupClause, outputs, scope, ctes, GROUP_BY, sort=False)
        self.expr(node.havingClause, scope, ctes, HAVING)
        for window in node.windowClause or ():
            self._window(window, scope, ctes)
        distinct = [d for d in node.distinctClause or () if d is not None]
        self._positional(distinct, outputs, scope, ctes, DISTINCT_ON, sort=False)
        self._positional(node.sortClause, outputs, scope, ctes, ORDER_BY, sort=True)
        self.expr(node.limitCount, scope, ctes, LIMIT)
        self.expr(node.limitOffset, scope, ctes, LIMIT)
        return outputs

    def _with(self, clause: ast.WithClause | None, outer: list[_Level], ctes: _Ctes) -> _Ctes:
        if clause is None:
            return ctes
        ctes = dict(ctes)
        for cte in clause.ctes:
            query = cte.ctequery
            if (
                clause.recursive
                and isinstance(query, ast.SelectStmt)
                and query.op != enums.SetOperation.SETOP_NONE
            ):
                # The recursive part reads the CTE itself: trace the start, then the whole as derived.
                seed = self.select(query.larg, outer, ctes)
                ctes[cte.ctename] = _renamed([(n, _union([lin], derived=True)) for n, lin in seed], None)
            outputs = self._cte_query(query, outer, ctes)
            names = _strings(cte.aliascolnames)
            ctes[cte.ctename] = [
                (names[i] if i < len(names) else name, lin) for i, (name, lin) in enumerate(outputs)
            ]
        return ctes

    def _cte_query(self, query: Any, outer: list[_Level], ctes: _Ctes) -> list[tuple[str, Lineage]]:
        if isinstance(query, ast.SelectStmt):
            return self.select(query, outer, ctes)
        statement = self._statement(query)  # INSERT/UPDATE/DELETE ... RETURNING
        return statement.outputs or []

    def _targets(
        self, targets: Iterable[Any] | None, scope: list[_Level], ctes: _Ctes, level: _Level | None = None
    ) -> list[tuple[str, Lineage]]:
        outputs: list[tuple[str, Lineage]] = []
        for target in targets or ():
            value = target.val
            if isinstance(value, ast.ColumnRef) and isinstance(value.fields[-1], ast.A_Star):
                outputs.extend(self._star(value, scope))
                continue
            if isinstance(value, ast.ColumnRef):
                lineage = self.column(value, scope)
                if lineage.derived and lineage.sources:  # a whole row: every column, as an expression
                    self._use(lineage, SELECT_LIST)
            elif isinstance(value, ast.SubLink) and value.subLinkType == enums.SubLinkType.EXPR_SUBLINK:
                inner = self.select(value.subselect, scope, ctes)
                lineage = (
                    inner[0][1] if len(inner) == 1 else Lineage(untraceable="subquery of several columns")
                )
            else:
                lineage = self.expr(value, scope, ctes, SELECT_LIST)
            outputs.append((target.name or _default_name(value), lineage))
        return outputs

    def _star(self, ref: ast.ColumnRef, scope: list[_Level]) -> list[tuple[str, Lineage]]:
        qualifier = _strings(ref.fields[:-1])
        if not qualifier:
            level = scope[-1] if scope else _Level()
            if not level.star_known:
                return [("?", Lineage(untraceable="* over a FROM item of unknown columns"))]
            return list(level.star)
        item = self._find_item(qualifier, scope)
        if item is None:
            return [("?", Lineage(untraceable=f"unknown relation {'.'.join(qualifier)}"))]
        if item.open is not None:
            return [("?", item.open)]
        return list(item.columns)

    def _positional(
        self,
        items: Iterable[Any] | None,
        outputs: list[tuple[str, Lineage]],
        scope: list[_Level],
        ctes: _Ctes,
        clause: str,
        *,
        sort: bool,
    ) -> None:
        """ORDER BY, GROUP BY and DISTINCT ON items may name a result column by position or by
        output name: count the result column's sources as used too."""
        for item in items or ():
            node = item.node if isinstance(item, ast.SortBy) else item
            if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Integer):
                position = node.val.ival
                if 1 <= position <= len(outputs):
                    self._use(outputs[position - 1][1], clause)
                continue
            if (
                isinstance(node, ast.ColumnRef)
                and len(node.fields) == 1
                and isinstance(node.fields[0], ast.String)
            ):
                name = node.fields[0].sval
                named = [lin for out, lin in outputs if out == name]
                if named:
                    for lineage in named:
                        self._use(lineage, clause)
                    if self._resolvable(name, scope):
                        self.expr(node, scope, ctes, clause)
                    continue
            self.expr(node, scope, ctes, clause)

    def _window(self, window: ast.WindowDef, scope: list[_Level], ctes: _Ctes) -> None:
        for node in window.partitionClause or ():
            self.expr(node, scope, ctes, PARTITION_BY)
        for item in window.orderClause or ():
            self.expr(item.node, scope, ctes, WINDOW_ORDER_BY)

    # --- FROM ---------------------------------------------------------------------------------

    def _from_item(self, node: Any, level: _Level, outer: list[_Level], ctes: _Ctes) -> None:
        items, star, known = self._range(node, level, outer, ctes)
        level.items.extend(items)
        level.star.extend(star)
        level.star_known = level.star_known and known

    def _range(
        self, node: Any, level: _Level, outer: list[_Level], ctes: _Ctes
    ) -> tuple[list[_Item], list[tuple[str, Lineage]], bool]:
        if isinstance(node, ast.RangeVar):
            item = self._range_var(node, ctes)
            return [item], item.columns, item.open is None
        if isinstance(node, ast.RangeSubselect):
            lateral = [*outer, level]  # LATERAL may see earlier items; otherwise the server refuses
            columns = _renamed(self.select(node.subquery, lateral, ctes), node.alias)
            alias = node.alias.aliasname if node.alias is not None else None
            return [_Item(alias, None, columns)], columns, True
        if isinstance(node, ast.JoinExpr):
            return self._join(node, level, outer, ctes)
        if isinstance(node, ast.RangeFunction):
            return self._range_function(node, level, outer, ctes)
        if isinstance(node, ast.RangeTableSample):
            for arg in node.args or ():
                self.expr(arg, [*outer, level], ctes, FROM_FUNCTION)
            return self._range(node.relation, level, outer, ctes)
        # XMLTABLE, JSON_TABLE and whatever comes next: read through, untraced.
        for child in _children(node):
            self.expr(child, [*outer, level], ctes, FROM_FUNCTION)
        alias = getattr(node, "alias", None)
        opaque = Lineage(untraceable=f"{type(node).__name__} in FROM")
        return [_Item(alias.aliasname if alias else None, None, [], opaque)], [], False

    def _range_var(self, node: ast.RangeVar, ctes: _Ctes) -> _Item:
        alias = node.alias.aliasname if node.alias is not None else None
        if node.schemaname is None and node.relname in ctes:
            return _Item(alias or node.relname, None, _renamed(ctes[node.relname], node.alias))
        relation = self.catalog.by_name(node.schemaname, node.relname)
        if not isinstance(relation, Relation):
            why = "not looked up yet" if relation is False else f"no relation {node.relname}"
            return _Item(alias or node.relname, node.schemaname, [], Lineage(untraceable=why))
        columns = _renamed(_relation_lineage(relation), node.alias)
        return _Item(alias or relation.name, None if alias else relation.schema, columns)

    def _relation_columns(self, node: ast.RangeVar, names: list[str]) -> list[tuple[str, Lineage]] | None:
        item = self._range_var(node, {})
        if item.open is not None:
            return None
        if not names:
            return item.columns
        by_name = dict(item.columns)
        return [(n, by_name.get(n, Lineage(untraceable=f"unknown column {n}"))) for n in names]

    def _join(
        self, node: ast.JoinExpr, level: _Level, outer: list[_Level], ctes: _Ctes
    ) -> tuple[list[_Item], list[tuple[str, Lineage]], bool]:
        left_items, left_star, left_known = self._range(node.larg, level, outer, ctes)
        right_items, right_star, right_known = self._range(node.rarg, level, outer, ctes)
        joined = _Level([*level.items, *left_items, *right_items])
        if node.isNatural:
            right_names = {name for name, _ in right_star}
            using = [name for name, _ in left_star if name in right_names]
            if not (left_known and right_known):
                self._use_all(left_star + right_star, JOIN_USING)
        else:
            using = _strings(node.usingClause)
        merged: list[tuple[str, Lineage]] = []
        for name in using:
            left = _union((lin for n, lin in left_star if n == name), derived=False)
            right = _union((lin for n, lin in right_star if n == name), derived=False)
            self._use(left, JOIN_USING)
            self._use(right, JOIN_USING)
            merged.append((name, left.merged(right, derived=False)))
        self.expr(node.quals, [*outer, joined], ctes, JOIN_ON)
        star = (
            merged
            + [c for c in left_star if c[0] not in using]
            + [c for c in right_star if c[0] not in using]
        )
        items = [*left_items, *right_items]
        if merged:
            items.append(_Item(None, None, merged))
        if node.alias is not None:
            items.append(_Item(node.alias.aliasname, None, _renamed(star, node.alias)))
        return items, star, left_known and right_known

    def _range_function(
        self, node: ast.RangeFunction, level: _Level, outer: list[_Level], ctes: _Ctes
    ) -> tuple[list[_Item], list[tuple[str, Lineage]], bool]:
        scope = [*outer, level]
        lineage = Lineage()
        first_name = None
        for function, _coldefs in node.functions:
            lineage = lineage.merged(self.expr(function, scope, ctes, FROM_FUNCTION), derived=True)
            if first_name is None and isinstance(function, ast.FuncCall):
                first_name = function.funcname[-1].sval
        alias = node.alias
        refname = alias.aliasname if alias is not None else first_name
        names = _strings(alias.colnames) if alias is not None else []
        if names:
            columns = [(name, lineage) for name in names]
            if node.ordinality:
                columns.append(("ordinality", CONSTANT))
            return [_Item(refname, None, columns)], columns, True
        # A function's own column names are not looked up: any name may be one of them.
        return [_Item(refname, None, [], lineage)], [], False

    # --- expressions --------------------------------------------------------------------------

    def expr(self, node: Any, scope: list[_Level], ctes: _Ctes, clause: str) -> Lineage:
        """The lineage of an expression; every column it reads is recorded as used in ``clause``."""
        if node is None:
            return CONSTANT
        sources: set[Source] = set()
        untraceable: str | None = None
        stack = [(node, clause)]
        while stack:
            current, where = stack.pop()
            found: Lineage | None = None
            if isinstance(current, ast.ColumnRef):
                found = (
                    self._star_lineage(current, scope)
                    if isinstance(current.fields[-1], ast.A_Star)
                    else (self.column(current, scope))
                )
                self._use(found, where)
            elif isinstance(current, ast.SubLink):
                inner = self.select(current.subselect, scope, ctes)
                found = _union((lin for _, lin in inner), derived=True)
                self._use(found, where)
                if current.testexpr is not None:
                    stack.append((current.testexpr, where))
            elif isinstance(current, ast.FuncCall):
                found = self._function(current, where)
                over = current.over
                for child in current.args or ():
                    stack.append((child, where))
                for item in current.agg_order or ():
                    stack.append((item.node, where))
                if current.agg_filter is not None:
                    stack.append((current.agg_filter, FILTER))
                if isinstance(over, ast.WindowDef):
                    stack.extend((child, PARTITION_BY) for child in over.partitionClause or ())
                    stack.extend((item.node, WINDOW_ORDER_BY) for item in over.orderClause or ())
            else:
                stack.extend((child, where) for child in _children(current))
            if found is not None:
                sources |= found.sources
                untraceable = untraceable or found.untraceable
        return Lineage(frozenset(sources), True, untraceable)

    def _function(self, call: ast.FuncCall, clause: str) -> Lineage | None:
        names = _strings(call.funcname)
        name = names[-1] if names else "?"
        schema = names[0] if len(names) > 1 else None
        if name == "set_config":
            self.resets_names = True
        if schema not in (None, "pg_catalog") or name in SQL_RUNNING_BUILTINS:
            builtin: bool | None = False
        else:
            builtin = self.catalog.builtin(name)
        if builtin:
            return None
        why = (
            "not looked up yet"
            if builtin is None
            else f"calls {'.'.join(names)}(), not a PostgreSQL built-in"
        )
        if clause != SELECT_LIST:
            self.opaque.append((f"{'.'.join(names)}()", clause))
        return Lineage(untraceable=why)

    def column(self, ref: ast.ColumnRef, scope: list[_Level]) -> Lineage:
        """A column reference's lineage: one source, or the whole row (derived) for ``t``."""
        parts = _strings(ref.fields)
        if len(parts) != len(ref.fields):
            return Lineage(untraceable="unsupported column reference")
        name, qualifier = parts[-1], parts[:-1]
        if qualifier:
            item = self._find_item(qualifier, scope)
            if item is None:
                # `a.b` may also be column a's field b: read the whole of column a.
                return self._unqualified(qualifier[-1], scope, field_access=True)
            return self._in_item(item, name)
        return self._unqualified(name, scope)

    def _unqualified(self, name: str, scope: list[_Level], *, field_access: bool = False) -> Lineage:
        for level in reversed(scope):
            matches = [lin for item in level.items for n, lin in item.columns if n == name]
            opens = [item.open for item in level.items if item.open is not None and not item.columns]
            if matches or opens:
                lineage = _union(matches + opens, derived=len(matches) + len(opens) > 1)
                return _union([lineage], derived=True) if field_access else lineage
            rows = [item for item in level.items if item.refname == name]
            if rows:  # a whole-row reference, `SELECT t FROM t`
                return _union((lin for item in rows for _, lin in item.columns), derived=True)
        if name in SYSTEM_COLUMNS:
            return CONSTANT
        return Lineage(untraceable=f"cannot resolve column {name}")

    def _resolvable(self, name: str, scope: list[_Level]) -> bool:
        return any(n == name for level in scope for item in level.items for n, _ in item.columns)

    def _find_item(self, qualifier: list[str], scope: list[_Level]) -> _Item | None:
        refname = qualifier[-1]
        schema = qualifier[-2] if len(qualifier) > 1 else None
        for level in reversed(scope):
            for item in level.items:
                if item.refname == refname and (schema is None or item.schema == schema):
                    return item
        return None

    def _in_item(self, item: _Item, name: str) -> Lineage:
        matches = [lin for n, lin in item.columns if n == name]
        if matches:
            return _union(matches, derived=len(matches) > 1)
        if item.open is not None:
            return item.open
        if name in SYSTEM_COLUMNS:
            return CONSTANT
        return Lineage(untraceable=f"cannot resolve column {item.refname}.{name}")

    def _star_lineage(self, ref: ast.ColumnRef, scope: list[_Level]) -> Lineage:
        return _union((lin for _, lin in self._star(ref, scope)), derived=True)

    # --- uses ---------------------------------------------------------------------------------

    def _use(self, lineage: Lineage, clause: str) -> None:
        for source in lineage.sources:
            self.uses.append(Use(source, clause))
        if lineage.untraceable and clause != SELECT_LIST:
            self.opaque.append((lineage.untraceable, clause))

    def _assigned(self, target: _Item, names: Iterable[str], clause: str) -> None:
        """Columns a statement writes: each a use (its constraints answer questions about it)."""
        for name in names:
            self._use(self._in_item(target, name), clause)

    def _use_all(self, outputs: Iterable[tuple[str, Lineage]], clause: str) -> None:
        for _, lineage in outputs:
            self._use(lineage, clause)


def _relation_lineage(relation: Relation) -> list[tuple[str, Lineage]]:
    return [
        (
            name,
            Lineage(
                frozenset({Source(relation.schema, relation.name, name, relation.oid, attnum)}), False, None
            ),
        )
        for attnum, name in relation.columns
    ]


def _default_name(node: Any) -> str:
    """The column name PostgreSQL gives an unnamed result column, near enough for matching."""
    if isinstance(node, ast.ColumnRef):
        parts = _strings(node.fields)
        return parts[-1] if parts else "?column?"
    if isinstance(node, ast.FuncCall):
        return node.funcname[-1].sval
    if isinstance(node, ast.TypeCast):
        return _default_name(node.arg)
    return "?column?"
