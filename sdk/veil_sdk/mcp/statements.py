"""Which statements an agent may run: one ``SELECT`` (``WITH`` included) or ``EXPLAIN`` of one.

Checked on PostgreSQL's own parse tree (pglast), not on the text, so comments, odd spacing or a
second statement after a semicolon cannot slip a write through. The connection is also read-only
(``default_transaction_read_only``), which catches what a parse tree cannot show: a function
that writes, called from a ``SELECT``.
"""

from __future__ import annotations

from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError

__all__ = ["StatementRefused", "check_read_only"]

MAX_STATEMENT_CHARS = 100_000


class StatementRefused(ValueError):
    """The statement may not run; the message says why, in words a model can act on."""


def check_read_only(sql: str) -> bool:
    """Whether ``sql`` is an ``EXPLAIN`` (True) or a ``SELECT`` (False); raises
    ``StatementRefused`` for anything else."""
    if not isinstance(sql, str) or not sql.strip():
        raise StatementRefused("sql: give one SELECT, WITH or EXPLAIN statement")
    if len(sql) > MAX_STATEMENT_CHARS:
        raise StatementRefused(f"sql: longer than {MAX_STATEMENT_CHARS} characters")
    try:
        statements = parse_sql(sql)
    except ParseError as exc:
        raise StatementRefused(f"sql: syntax error: {exc}") from None
    if len(statements) != 1:
        raise StatementRefused(f"sql: exactly one statement per call (found {len(statements)})")
    node = statements[0].stmt
    if isinstance(node, ast.ExplainStmt):
        options = {option.defname.lower() for option in node.options or ()}
        if "analyze" in options:
            raise StatementRefused("sql: EXPLAIN ANALYZE runs the statement; use EXPLAIN alone")
        _check_select(node.query)
        return True
    _check_select(node)
    return False


def _check_select(node: Any) -> None:
    if not isinstance(node, ast.SelectStmt):
        kind = type(node).__name__.removesuffix("Stmt").upper() or "this statement"
        raise StatementRefused(f"sql: only SELECT, WITH and EXPLAIN are allowed here, not {kind}")
    if node.intoClause is not None:
        raise StatementRefused("sql: SELECT INTO creates a table; only reading is allowed")
    if node.lockingClause:
        raise StatementRefused("sql: FOR UPDATE/SHARE locks rows; only reading is allowed")
    for cte in (node.withClause.ctes if node.withClause else None) or ():
        _check_select(cte.ctequery)
    for branch in (node.larg, node.rarg):
        if branch is not None:
            _check_select(branch)
