"""The MCP server: four tools over one source database, for one agent (a Veil service account).

``build_server(settings)`` returns an ``MCPServer`` (the official SDK's) with the tools
``list_tables``, ``describe_table``, ``query`` and ``request_access``. Each query opens its own
connection through ``veil_sdk.psycopg`` for the agent's principal (so lineage, the guard,
masking and access events apply, as for any other client of the data path; each access event
names the tool call, ``query`` with its arguments' shape, so Veil tells an agent's reads from a
job's), read-only, with a statement timeout, and reads at most ``max_rows`` rows through a
server-side cursor (a huge result is never fetched whole). Decisions that mask are not cached
(``mask_ttl`` 0): the query after an approval sees the grant. A tool that cannot answer answers
an error the model can act on; it never returns a value Veil did not clear, and never the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp.types import ToolAnnotations
from psycopg.conninfo import conninfo_to_dict
from pydantic import AnyHttpUrl, ConfigDict

from veil_sdk import psycopg as veil_psycopg
from veil_sdk.client import Column, ColumnDecision, VeilClient, service_account
from veil_sdk.datapath.origin import tool_call
from veil_sdk.mcp.statements import StatementRefused, check_read_only
from veil_sdk.mcp.tables import format_table

__all__ = ["Agent", "HttpToken", "Settings", "build_server"]

_INSTRUCTIONS = """\
Read-only SQL over a PostgreSQL database, as the service account {account}. Veil decides per \
column what you may see: masked columns come back masked, and a query that would use a masked \
column to infer its values (in WHERE, JOIN, GROUP BY, ORDER BY, aggregates) is refused. Start \
with list_tables and describe_table; use query for SELECT, WITH or EXPLAIN (one statement, \
at most {max_rows} rows). If you need a masked column, call request_access with the columns and \
a reason a person can judge; a person approves it, then query again."""


@dataclass(frozen=True)
class Settings:
    """What the server needs. ``token`` is the service account's Veil token (scopes
    ``decisions``, ``access-events`` and ``requests``); ``dsn`` may hold a password: neither is
    shown in a repr, a log or a tool's answer."""

    veil_url: str
    token: str = field(repr=False)
    service_account: str
    dsn: str = field(repr=False)
    instance: str
    database: str | None = None
    max_rows: int = 200
    statement_timeout_s: float = 15.0
    cell_chars: int = 200
    veil_timeout_s: float = 2.0
    request_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_rows <= 10_000:
            raise ValueError("max_rows must be between 1 and 10000")
        if self.statement_timeout_s <= 0:
            raise ValueError("statement_timeout_s must be positive")
        if not self.service_account or not self.instance:
            raise ValueError("service_account and instance are required")


class Agent:
    """The tools' work, without MCP: one agent (service account) on one database."""

    def __init__(self, settings: Settings, *, client: VeilClient | None = None) -> None:
        self.settings = settings
        self.principal = service_account(settings.service_account)
        self.client = client or VeilClient(
            settings.veil_url, settings.token, timeout=settings.veil_timeout_s, mask_ttl=0
        )

    # --- connections ----------------------------------------------------------------------------

    def _options(self) -> str:
        timeout_ms = max(1, int(self.settings.statement_timeout_s * 1000))
        return f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}"

    def _catalog_connection(self) -> psycopg.Connection[Any]:
        """A plain connection for names and types only (the catalog holds no row values)."""
        return psycopg.connect(self.settings.dsn, autocommit=True, options=self._options())

    def _database(self, conn: psycopg.Connection[Any]) -> str:
        return self.settings.database or conn.info.dbname

    # --- tools ----------------------------------------------------------------------------------

    def list_tables(self, schema: str | None = None) -> str:
        with self._catalog_connection() as conn:
            rows = conn.execute(_COLUMNS_SQL, {"schema": schema, "table": None}).fetchall()
            database = self._database(conn)
        if not rows:
            return "No tables" + (f" in schema {schema!r}." if schema else ".")
        decisions = self._decide(database, rows)
        lines = []
        for (table_schema, table), columns in _by_table(rows, decisions).items():
            masked = [f"{name} ({_why(d)})" for name, _, _, d in columns if d.masked]
            clear = [name for name, _, _, d in columns if not d.masked]
            line = f"- {table_schema}.{table}: {len(columns)} columns"
            if clear:
                line += f"; in clear: {', '.join(clear)}"
            if masked:
                line += f"; masked for you: {', '.join(masked)}"
            lines.append(line)
        return (
            f"Tables of {self.settings.instance}/{database}, as {self.settings.service_account} sees them:\n"
            + ("\n".join(lines))
        )

    def describe_table(self, table: str, schema: str = "public") -> str:
        with self._catalog_connection() as conn:
            rows = conn.execute(_COLUMNS_SQL, {"schema": schema, "table": table}).fetchall()
            database = self._database(conn)
        if not rows:
            raise ToolError(f"table: no table or view {schema}.{table} (list_tables shows what there is)")
        decisions = self._decide(database, rows)
        body = [
            (name, data_type, "yes" if nullable else "no", "masked" if d.masked else "clear", _why(d))
            for name, data_type, nullable, d in _by_table(rows, decisions)[(schema, table)]
        ]
        return f"{schema}.{table} for {self.settings.service_account}:\n" + format_table(
            ["column", "type", "nullable", "you see", "why"], body, cell_chars=self.settings.cell_chars
        )

    def query(self, sql: str, max_rows: int = 50) -> str:
        limit = self.settings.max_rows
        if not 1 <= max_rows <= limit:
            raise ToolError(f"max_rows: between 1 and {limit}")
        try:
            explain = check_read_only(sql)
        except StatementRefused as refusal:
            raise ToolError(str(refusal)) from None
        try:
            with (
                tool_call("query", {"sql": sql, "max_rows": max_rows}),
                veil_psycopg.connect(
                    self.settings.dsn,
                    client=self.client,
                    principal=self.principal,
                    instance=self.settings.instance,
                    database=self.settings.database,
                    options=self._options(),
                ) as conn,
            ):
                cursor = conn.cursor() if explain else conn.cursor(name="veil_mcp")
                with cursor:
                    cursor.execute(sql)
                    rows = cursor.fetchmany(max_rows + 1)
                    names = [column.name for column in cursor.description or ()]
                    plan = cursor._veil_plans.get(0)  # type: ignore[attr-defined]  # masked, per field
                conn.rollback()
        except psycopg.errors.InsufficientPrivilege as refused:
            raise ToolError(f"refused by Veil's inference guard: {refused}") from None
        except psycopg.errors.QueryCanceled:
            raise ToolError(
                f"the statement ran longer than {self.settings.statement_timeout_s:g} s and was cancelled"
            ) from None
        except psycopg.Error as error:
            raise ToolError(_database_error(error)) from None
        more = len(rows) > max_rows
        rows = rows[:max_rows]
        text = format_table(names, rows, cell_chars=self.settings.cell_chars)
        count = f"{len(rows)} row{'s' if len(rows) != 1 else ''}"
        if more:
            count = f"first {len(rows)} rows shown (max_rows {max_rows}; the result has more)"
        notes = [count]
        masked = _masked_fields(names, plan.decisions if plan is not None else ())
        if masked:
            notes.append("masked: " + "; ".join(masked) + " (request_access asks for them)")
        return text + "\n" + "\n".join(notes)

    def request_access(
        self, table: str, columns: list[str], reason: str, duration_minutes: int = 60, schema: str = "public"
    ) -> str:
        if not columns:
            raise ToolError("columns: name at least one column of the table")
        if not reason.strip():
            raise ToolError("reason: say why you need the columns; a person reads it to decide")
        body = {
            "instance": self.settings.instance,
            "database": self.settings.database or conninfo_to_dict(self.settings.dsn).get("dbname", ""),
            "schema": schema,
            "table": table,
            "columns": columns,
            "duration_minutes": duration_minutes,
            "reason": reason,
        }
        try:
            status, payload = self.client._request(
                "POST", "/api/v1/requests", body, self.settings.request_timeout_s
            )
        except Exception:
            raise ToolError("Veil could not be reached: no request was filed; try again later") from None
        if status != 201 or not isinstance(payload, dict):
            raise ToolError(f"Veil did not file the request (HTTP {status}): {_api_error(payload)}")
        link = f"{self.settings.veil_url.rstrip('/')}/requests/{payload['id']}/"
        lines = [
            f"Request {payload.get('ref') or payload['id']} filed for {schema}.{table} "
            f"({', '.join(columns)}), {duration_minutes} minutes: state {payload['state']}.",
            f"Link: {link}",
        ]
        if payload["state"] == "pending":
            lines.append("A person decides (in Slack or on the link); query again once it is approved.")
        elif payload["state"] in ("approved", "active"):
            lines.append("Granted: query again to see the columns.")
        return "\n".join(lines)

    # --- helpers --------------------------------------------------------------------------------

    def _decide(self, database: str, rows: Sequence[tuple[Any, ...]]) -> list[ColumnDecision]:
        columns = [Column(self.settings.instance, database, s, t, c) for s, t, c, _, _ in rows]
        return self.client.decide(self.principal, columns, query_id="mcp-catalog")

    def close(self) -> None:
        self.client.close()


_COLUMNS_SQL = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
  AND (%(table)s::text IS NULL OR c.relname = %(table)s)
  AND has_table_privilege(c.oid, 'SELECT')
ORDER BY 1, 2, a.attnum
LIMIT 20000
"""


def _by_table(
    rows: Sequence[tuple[Any, ...]], decisions: Sequence[ColumnDecision]
) -> dict[tuple[str, str], list[tuple[str, str, bool, ColumnDecision]]]:
    tables: dict[tuple[str, str], list[tuple[str, str, bool, ColumnDecision]]] = {}
    for (schema, table, name, data_type, nullable), decision in zip(rows, decisions, strict=True):
        tables.setdefault((schema, table), []).append((name, data_type, nullable, decision))
    return tables


def _why(decision: ColumnDecision) -> str:
    """Veil's reason in a few words: its kind, the rule's or grant's title, a grant's end."""
    reason = decision.reason or {}
    words = str(reason.get("kind") or "unknown").replace("_", " ")
    if reason.get("title"):
        words += f" '{reason['title']}'"
    if decision.expires_at is not None:
        words += f" until {decision.expires_at.isoformat(timespec='seconds')}"
    return words


def _masked_fields(names: Sequence[str], decisions: Sequence[ColumnDecision]) -> list[str]:
    return [f"{name} ({_why(d)})" for name, d in zip(names, decisions, strict=False) if d.masked]


# SQLSTATE class 22 (data exceptions) quotes the offending value ("invalid input syntax for type
# integer: ...") even when the value came from a masked column: the message is withheld.
_VALUE_QUOTING_CLASSES = ("22",)


def _database_error(error: psycopg.Error) -> str:
    sqlstate = error.sqlstate or "unknown"
    if sqlstate.startswith(_VALUE_QUOTING_CLASSES):
        return f"the database refused the statement (SQLSTATE {sqlstate}, a data exception; its message is withheld because it can quote a value)"  # noqa: E501
    primary = error.diag.message_primary if error.diag.message_primary else type(error).__name__
    return f"the database refused the statement (SQLSTATE {sqlstate}): {primary}"


def _api_error(payload: Any) -> str:
    """Veil's error shape in one line (field errors named), never the request's headers."""
    if not isinstance(payload, dict):
        return "no details"
    error = payload.get("error", payload)
    if isinstance(error, dict):
        fields = error.get("fields") or error.get("details")
        message = str(error.get("message") or error.get("detail") or "")
        if isinstance(fields, dict):
            message += " " + "; ".join(
                f"{k}: {' '.join(map(str, v if isinstance(v, list) else [v]))}" for k, v in fields.items()
            )
        return message.strip() or str(error)[:500]
    return str(error)[:500]


_FILES_A_REQUEST = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


MIN_HTTP_TOKEN_CHARS = 16
# The SDK's AuthSettings requires an issuer URL; with no authorization server provider and no
# resource_server_url it serves no metadata and names it nowhere: a static token has no issuer.
_NO_ISSUER = AnyHttpUrl("http://127.0.0.1")


class HttpToken:
    """The one bearer token the streamable HTTP transport answers (the SDK's ``TokenVerifier``
    hook): the SDK's middleware answers any request without it 401 with ``WWW-Authenticate:
    Bearer`` before a tool runs. Compared in constant time."""

    def __init__(self, token: str) -> None:
        if len(token) < MIN_HTTP_TOKEN_CHARS:
            raise ValueError(f"the HTTP token must be at least {MIN_HTTP_TOKEN_CHARS} characters")
        self._token = token.encode()

    def __repr__(self) -> str:
        return "HttpToken(...)"

    async def verify_token(self, token: str) -> AccessToken | None:
        if not hmac.compare_digest(token.encode(), self._token):
            return None
        return AccessToken(token="", client_id="veil-mcp-http", scopes=[])


def build_server(
    settings: Settings, *, agent: Agent | None = None, http_token: HttpToken | None = None
) -> MCPServer:
    """The MCP server for ``settings``; run it with ``.run("stdio")`` or ``.run("streamable-http")``.
    With ``http_token``, streamable HTTP answers only requests bearing it (stdio is unaffected)."""
    worker = agent or Agent(settings)
    server = MCPServer(
        name="veil-mcp",
        instructions=_INSTRUCTIONS.format(account=settings.service_account, max_rows=settings.max_rows),
        token_verifier=http_token,
        auth=AuthSettings(issuer_url=_NO_ISSUER, resource_server_url=None) if http_token else None,
    )

    @server.tool(annotations=_READ_ONLY)
    def list_tables(schema: str | None = None) -> str:
        """The tables and views you can read, each with the columns you see in clear and those
        masked for you (and why). ``schema`` limits the list to one schema."""
        return worker.list_tables(schema)

    @server.tool(annotations=_READ_ONLY)
    def describe_table(table: str, schema: str = "public") -> str:
        """One table's columns: type, nullability, whether you see it in clear or masked, and why."""
        return worker.describe_table(table, schema)

    @server.tool(annotations=_READ_ONLY)
    def query(sql: str, max_rows: int = 50) -> str:
        """Run one read-only statement (SELECT, WITH or EXPLAIN) and answer its rows as a table.
        Masked columns come back masked; a statement using a masked column to infer its values is
        refused. ``max_rows`` caps the rows answered."""
        return worker.query(sql, max_rows)

    @server.tool(annotations=_FILES_A_REQUEST)
    def request_access(
        table: str, columns: list[str], reason: str, duration_minutes: int = 60, schema: str = "public"
    ) -> str:
        """Ask a person for access to masked columns of one table, for ``duration_minutes``, with a
        ``reason`` they can judge. Answers the request's state and link; once approved, query
        shows the columns."""
        return worker.request_access(table, columns, reason, duration_minutes, schema)

    _refuse_unknown_arguments(server)
    return server


def _refuse_unknown_arguments(server: MCPServer) -> None:
    """The SDK ignores arguments a tool does not declare; a typo ("max_row") would then silently
    fall back to a default. Each tool's argument model forbids them instead, and says so in its
    input schema (``additionalProperties: false``)."""
    for tool in server._tool_manager.list_tools():
        base = tool.fn_metadata.arg_model
        config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
        strict: type[ArgModelBase] = type(base.__name__, (base,), {"model_config": config})
        tool.fn_metadata.arg_model = strict
        tool.parameters = strict.model_json_schema(by_alias=True)
