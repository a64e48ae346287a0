"""Where a query came from, for its access event: the statement's fingerprint and the tool call
that ran it.

The fingerprint is PostgreSQL's own (pg_query's, through pglast): a hash of the parse tree with
every literal left out, so ``WHERE id = 7`` and ``WHERE id = 42`` share it and no value in the
text reaches Veil. A tool call is named by the tool and the *shape* of its arguments (each
argument's JSON type), never their values: an agent's SQL or reason stays in the data-access layer.
Code that runs queries for a tool (``veil-mcp``) wraps them in ``with tool_call(name, arguments):``;
each query checked meanwhile, on this thread or task, reports it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any

from pglast.parser import ParseError
from pglast.parser import fingerprint as _pg_fingerprint

from veil_sdk.client import _checked_tool_call

__all__ = ["argument_shape", "current_tool_call", "statement_fingerprint", "tool_call"]

_TOOL_CALL: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "veil_tool_call", default=None
)


def statement_fingerprint(sql: str) -> str:
    """The statement's fingerprint (16 hex digits), or ``""`` when PostgreSQL cannot parse it."""
    try:
        return str(_pg_fingerprint(sql))
    except (ParseError, ValueError):
        return ""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    return "array" if isinstance(value, list | tuple) else "string"


def argument_shape(arguments: Mapping[str, Any]) -> dict[str, str]:
    """Each argument's name with its JSON type (``{"sql": "string", "max_rows": "integer"}``)."""
    return {str(name): _json_type(value) for name, value in arguments.items()}


@contextlib.contextmanager
def tool_call(tool: str, arguments: Mapping[str, Any]) -> Iterator[None]:
    """Report the queries run inside the block as run by this tool call (an MCP tool's). Raises
    ``ValueError`` at once for a name Veil would refuse, rather than losing the access events."""
    token = _TOOL_CALL.set(_checked_tool_call({"tool": tool, "arguments": argument_shape(arguments)}))
    try:
        yield
    finally:
        _TOOL_CALL.reset(token)


def current_tool_call() -> Mapping[str, Any] | None:
    """The tool call the current context runs queries for, if any."""
    return _TOOL_CALL.get()
