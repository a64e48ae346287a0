"""A psycopg 3 connection whose cursors enforce Veil's decisions.

``connect(...)`` returns a ``psycopg.Connection`` (``connect_async`` an ``AsyncConnection``) for
one principal. Every statement a cursor runs is first checked by the inference guard (a refused
query raises ``psycopg.errors.InsufficientPrivilege``, SQLSTATE 42501, and never reaches the
server), every result it returns is masked column by column as Veil decides (through the
client's decision cache: one request per distinct set of source columns at most), and each
query is reported to Veil as one access event with its row count.

Catalog lookups run on the connection itself, before the query (so they see its search_path and
its transaction). The rows are masked in the row maker psycopg calls for each row, after the
values are loaded, so tuple rows, ``dict_row`` and any other row factory receive masked values.
Masked values are text (or None), whatever the column's type.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import adapt, errors, pq, sql
from psycopg._queries import PostgresQuery, _query2pg
from psycopg.rows import RowMaker, tuple_row

from veil_sdk.client import Principal, VeilClient, _as_principal
from veil_sdk.datapath import Check, Enforcer, Field, GuardRefusal, Planning, ResultPlan, Session
from veil_sdk.datapath.catalog import Lookup
from veil_sdk.datapath.enforce import WITHHELD_CLASSES

__all__ = [
    "AsyncVeilConnection",
    "AsyncVeilCursor",
    "VeilConnection",
    "VeilCursor",
    "VeilCursorMixin",
    "acting_as",
    "bind",
    "connect",
    "connect_async",
    "enforcer_for",
    "veil_cursor_class",
]

_ENFORCERS: weakref.WeakKeyDictionary[VeilClient, dict[tuple[str, str, str | None], Enforcer]] = (
    weakref.WeakKeyDictionary()
)
_ENFORCERS_LOCK = threading.Lock()


def enforcer_for(
    client: VeilClient, instance: str, database: str, *, guard_mode: str | None = None
) -> Enforcer:
    """The one Enforcer (and catalog cache) per client and target, shared by its connections."""
    key = (instance, database, guard_mode)
    with _ENFORCERS_LOCK:
        per_client = _ENFORCERS.setdefault(client, {})
        if key not in per_client:
            per_client[key] = Enforcer(client, instance, database, guard_mode=guard_mode)
        return per_client[key]


_ACTING_AS: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("veil_acting_as", default=None)


@contextlib.contextmanager
def acting_as(principal: Principal | Mapping[str, Any]) -> Iterator[Principal]:
    """Run the queries of this context (thread or task) for ``principal``, on connections bound
    without one (a framework's shared connections: a web request sets it in a middleware)."""
    token = _ACTING_AS.set(_as_principal(principal))
    try:
        yield _ACTING_AS.get()  # type: ignore[misc]
    finally:
        _ACTING_AS.reset(token)


class _Binding:
    """What a connection enforces for: its principal (or None: whoever ``acting_as`` names at
    query time) and its session on the target."""

    __slots__ = ("principal", "session")

    def __init__(self, session: Session, principal: Principal | None) -> None:
        self.session = session
        self.principal = principal

    def current_principal(self) -> Principal | None:
        return self.principal or _ACTING_AS.get()


def bind(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
    *,
    client: VeilClient,
    principal: Principal | Mapping[str, Any] | None,
    instance: str,
    database: str | None = None,
    guard_mode: str | None = None,
) -> None:
    """Attach Veil's enforcement to a connection whose cursors use ``VeilCursorMixin``.
    ``principal`` None: each query runs for whoever ``acting_as`` names then."""
    if not _is_postgresql(conn):
        version = conn.info.parameter_status("server_version") or "no version"
        raise psycopg.NotSupportedError(
            f"Veil's data path enforces on PostgreSQL 10 or later only, not on this server ({version})"
        )
    enforcer = enforcer_for(client, instance, database or conn.info.dbname, guard_mode=guard_mode)
    who = None if principal is None else _as_principal(principal)
    conn._veil = _Binding(enforcer.session(), who)  # type: ignore[union-attr]


def _is_postgresql(conn: Any) -> bool:
    """PostgreSQL itself: its catalog and RowDescription are what lineage relies on. Servers that
    speak the protocol without being PostgreSQL (pgbouncer's console, CockroachDB) are refused."""
    info = conn.info
    version = info.parameter_status("server_version") or ""
    return (
        version[:1].isdigit() and info.server_version >= 100000 and not info.parameter_status("crdb_version")
    )


def _binding(cursor: Any) -> _Binding:
    binding = getattr(cursor.connection, "_veil", None)
    if binding is None:
        raise psycopg.InterfaceError("this connection is not bound to Veil (use veil_sdk.psycopg.connect)")
    return binding


def _query_text(cursor: Any, query: Any, params: Any) -> str:
    """The statement as the server will parse it (placeholders as $n)."""
    if isinstance(query, sql.Composable):
        query = query.as_string(cursor)
    if isinstance(query, str) and (params is None or cursor._query_cls is PostgresQuery):
        # Sent as written, or with its placeholders numbered (server-side binding): the text
        # depends on the query alone, so it is converted once.
        return query if params is None else _numbered(query)
    converted = cursor._query_cls(adapt.Transformer(cursor))
    converted.convert(query, params)
    text = converted.query
    return text.decode(cursor.connection.info.encoding) if isinstance(text, bytes) else str(text)


@functools.lru_cache(maxsize=1024)
def _numbered(query: str) -> str:
    """psycopg's own conversion of %s / %(name)s placeholders to $n (cached there too)."""
    return _query2pg(query.encode(), "utf-8")[0].decode()


def _refusal(refusal: GuardRefusal) -> psycopg.Error:
    cls = errors.lookup(refusal.sqlstate) if refusal.sqlstate else errors.InsufficientPrivilege
    return cls(refusal.message)


def _withheld(check: Check | None, error: psycopg.Error) -> psycopg.Error | None:
    """The server's error, or the same class of error without its message when the message may
    quote a masked value (a failed cast or a duplicate key quotes the value it failed on)."""
    sqlstate = error.sqlstate or ""
    if check is None or sqlstate[:2] not in WITHHELD_CLASSES or not check.masks_any():
        return None
    return errors.lookup(sqlstate)(
        f"Veil withheld the server's message (SQLSTATE {sqlstate}): it may quote a value masked for you"
    )


def _fields(result: pq.abc.PGresult) -> list[Field]:
    """The result's columns as RowDescription gave them (names are not needed to trace them)."""
    return [Field("", result.ftable(i), result.ftablecol(i), result.ftype(i)) for i in range(result.nfields)]


def _unplanned(values: Sequence[Any]) -> Any:
    raise psycopg.InterfaceError("Veil could not plan the masking of this result; no row is returned")


def _masking(plan: ResultPlan | None, inner: RowMaker[Any]) -> RowMaker[Any]:
    if plan is None or not plan.masked_any:
        return inner
    masks = [(i, m) for i, m in enumerate(plan.maskers) if m is not None]

    def make_row(values: Sequence[Any]) -> Any:
        row = list(values)
        for index, masker in masks:
            row[index] = masker(row[index])
        return inner(row)

    return make_row


class VeilCursorMixin:
    """Guard, mask and report for psycopg's cursor classes (client- and server-side, and the
    cursor classes frameworks such as Django derive from them)."""

    _veil_check: Check | None = None
    _veil_plans: dict[int, ResultPlan | None]
    _veil_index_fixed: bool = False
    _veil_planning: bool = False

    # --- psycopg's hook: called whenever a result becomes the current one ---------------------

    def _make_row_maker(self) -> RowMaker[Any]:
        check = self._veil_check
        if check is not None and self._veil_planning:
            # Inside execute(): the plan is made right after it returns, with the catalog lookups
            # it may need; until then no row may be made (none is, unless planning failed).
            return _unplanned
        inner = super()._make_row_maker()  # type: ignore[misc]
        if check is None:
            # No check of ours made this result (a path around execute(), or the results a
            # refused statement left in place): nothing of it may leave.
            result = self.pgresult  # type: ignore[attr-defined]
            return inner if result is None or not result.nfields else _unplanned
        index = 0 if self._veil_index_fixed else self._iresult  # type: ignore[attr-defined]
        plans = self._veil_plans
        if index not in plans:
            # Planned after execute() normally; here (stream(), a lookup-free path) any lookup the
            # plan would need cannot run on the busy connection, so what it needs is untraceable.
            plans[index] = _plan_offline(check, index, self.pgresult)  # type: ignore[attr-defined]
        return _masking(plans[index], inner)

    # --- the shared steps ---------------------------------------------------------------------

    def _veil_begin(self, query: Any, params: Any, *, many: bool = False) -> Check | None:
        binding = _binding(self)
        self._veil_plans = {}
        self._veil_index_fixed = many
        self._veil_check = None
        text = _query_text(self, query, params)
        return binding.session.check(text, binding.current_principal())

    def _veil_results_to_plan(self) -> Iterator[tuple[int, pq.abc.PGresult, ResultPlan | Planning]]:
        """Each result with columns, after execute(): where its plan goes, the result, and its
        still-valid plan or the planning that makes one (the caller runs its lookups)."""
        check = self._veil_check
        assert check is not None
        for index, result in enumerate(getattr(self, "_results", None) or []):
            if result.nfields:
                key = 0 if self._veil_index_fixed else index
                fields = _fields(result)
                yield key, result, check.cached_plan(key, fields) or check.result(key, fields)

    def _veil_planned(self, key: int, result: pq.abc.PGresult, plan: ResultPlan) -> None:
        self._veil_plans[key] = plan
        assert self._veil_check is not None
        self._veil_check.record(plan, result.ntuples)

    def _veil_rows_ready(self) -> None:
        """Every result is planned: rows may be made, masked."""
        if getattr(self, "_results", None):
            self._make_row = self._make_row_maker()

    def _veil_refused(self, check: Check, refusal: GuardRefusal) -> psycopg.Error:
        check.report_refusal(refusal)
        return _refusal(refusal)


def _plan_offline(check: Check, index: int, result: pq.abc.PGresult | None) -> ResultPlan | None:
    if result is None or result.nfields == 0:
        return None
    planning = check.result(index, _fields(result))
    if planning.next_lookup() is not None:
        planning.give_up()
    return planning.plan()


def _run_lookup(conn: psycopg.Connection[Any], lookup: Lookup) -> list[tuple[Any, ...]]:
    with psycopg.Cursor(conn, row_factory=tuple_row) as cursor:
        cursor.execute(lookup.sql)
        return cursor.fetchall()


async def _run_lookup_async(conn: psycopg.AsyncConnection[Any], lookup: Lookup) -> list[tuple[Any, ...]]:
    async with psycopg.AsyncCursor(conn, row_factory=tuple_row) as cursor:
        await cursor.execute(lookup.sql)
        return await cursor.fetchall()


def _in_failed_transaction(conn: Any) -> bool:
    return conn.info.transaction_status == pq.TransactionStatus.INERROR


class _SyncVeilCursor(VeilCursorMixin):
    def _veil_guard(self, query: Any, params: Any, *, many: bool = False) -> None:
        conn = self.connection  # type: ignore[attr-defined]
        check = self._veil_begin(query, params, many=many)
        assert check is not None
        if _in_failed_transaction(conn):
            # The server refuses everything but ROLLBACK now: nothing can come back to mask.
            check.skip()
        else:
            while (lookup := check.next_lookup()) is not None:
                check.feed(_run_lookup(conn, lookup))
            try:
                check.raise_if_refused()
            except GuardRefusal as refusal:
                raise self._veil_refused(check, refusal) from None
        self._veil_check = check

    def _veil_after(self) -> None:
        self._veil_planning = False
        if self._veil_check is None:
            return
        conn = self.connection  # type: ignore[attr-defined]
        for key, result, step in self._veil_results_to_plan():
            if isinstance(step, Planning):
                while (lookup := step.next_lookup()) is not None:
                    step.feed(_run_lookup(conn, lookup))
                step = step.plan()
            self._veil_planned(key, result, step)
        self._veil_rows_ready()

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        self._veil_guard(query, params)
        self._veil_planning = True
        try:
            super().execute(query, params, **kwargs)  # type: ignore[misc]
        except psycopg.Error as error:
            raise _withheld(self._veil_check, error) or error from None
        self._veil_after()
        self._veil_report()
        return self

    def executemany(self, query: Any, params_seq: Iterable[Any], *, returning: bool = False) -> None:
        params_seq = list(params_seq)
        self._veil_guard(query, params_seq[0] if params_seq else None, many=True)
        self._veil_planning = True
        try:
            super().executemany(query, params_seq, returning=returning)  # type: ignore[misc]
        except psycopg.Error as error:
            raise _withheld(self._veil_check, error) or error from None
        self._veil_after()
        self._veil_report()

    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        self._veil_guard(statement, params)
        self._veil_report()
        return super().copy(statement, params, **kwargs)  # type: ignore[misc]

    def stream(self, query: Any, params: Any = None, **kwargs: Any) -> Iterator[Any]:
        """Rows one by one, checked first; each result is planned from what is cached, since the
        streaming connection cannot run lookups (what would need one is masked)."""
        self._veil_guard(query, params)
        check, rows = self._veil_check, 0
        try:
            for row in super().stream(query, params, **kwargs):  # type: ignore[misc]
                rows += 1
                yield row
        except psycopg.Error as error:
            raise _withheld(check, error) or error from None
        finally:
            if check is not None:
                for plan in self._veil_plans.values():
                    if plan is not None:
                        check.record(plan, rows)
                check.report()

    def _veil_report(self) -> None:
        if self._veil_check is not None:
            self._veil_check.report()


class VeilCursor(_SyncVeilCursor, psycopg.Cursor[Any]):
    """A client-side cursor that enforces Veil's decisions."""


class VeilClientCursor(_SyncVeilCursor, psycopg.ClientCursor[Any]):
    """psycopg's client-side-binding cursor, enforcing Veil's decisions."""


class _SyncVeilServerCursor(_SyncVeilCursor):
    """For server-side (named) cursors: checked at execute, each fetched batch masked, and
    reported when closed (it cannot know its row count before)."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        self._veil_guard(query, params)
        self._veil_planning = True
        try:
            super(_SyncVeilCursor, self).execute(query, params, **kwargs)  # type: ignore[misc]
        except psycopg.Error as error:
            raise _withheld(self._veil_check, error) or error from None
        self._veil_plan_described()
        return self

    def _veil_plan_described(self) -> None:
        self._veil_planning = False
        check = self._veil_check
        result = self.pgresult  # type: ignore[attr-defined]
        if check is None or result is None or result.nfields == 0:
            return
        planning = check.result(0, _fields(result))
        while (lookup := planning.next_lookup()) is not None:
            planning.feed(_run_lookup(self.connection, lookup))  # type: ignore[attr-defined]
        self._veil_plans[0] = planning.plan()
        self._make_row = self._make_row_maker()

    def close(self) -> None:
        check, plan = self._veil_check, self._veil_plans.get(0) if self._veil_check else None
        rows = self.rownumber or 0  # type: ignore[attr-defined]  # how far the client read
        super().close()  # type: ignore[misc]
        if check is not None:
            if plan is not None:
                check.record(plan, rows)
            check.report()
            self._veil_check = None


class VeilServerCursor(_SyncVeilServerCursor, psycopg.ServerCursor[Any]):
    """A server-side (named) cursor that enforces Veil's decisions."""


@functools.cache
def veil_cursor_class(cursor_class: type[Any]) -> type[Any]:
    """``cursor_class`` (a framework's own, such as Django's) enforcing Veil's decisions."""
    if issubclass(cursor_class, VeilCursorMixin):
        return cursor_class
    mixin = _SyncVeilServerCursor if issubclass(cursor_class, psycopg.ServerCursor) else _SyncVeilCursor
    return type(f"Veil{cursor_class.__name__}", (mixin, cursor_class), {})


class VeilConnection(psycopg.Connection[Any]):
    """A psycopg connection whose cursors enforce Veil's decisions for one principal."""


class _AsyncVeilCursor(VeilCursorMixin):
    async def _veil_guard(self, query: Any, params: Any, *, many: bool = False) -> None:
        conn = self.connection  # type: ignore[attr-defined]
        check = self._veil_begin(query, params, many=many)
        assert check is not None
        if _in_failed_transaction(conn):
            check.skip()
        else:
            while (lookup := check.next_lookup()) is not None:
                check.feed(await _run_lookup_async(conn, lookup))
            try:
                if check.memo is None:  # asking Veil blocks: not on the event loop
                    await asyncio.to_thread(check.raise_if_refused)
                else:
                    check.raise_if_refused()
            except GuardRefusal as refusal:
                raise self._veil_refused(check, refusal) from None
        self._veil_check = check

    async def _veil_after(self) -> None:
        self._veil_planning = False
        if self._veil_check is None:
            return
        conn = self.connection  # type: ignore[attr-defined]
        for key, result, step in self._veil_results_to_plan():
            if isinstance(step, Planning):
                while (lookup := step.next_lookup()) is not None:
                    step.feed(await _run_lookup_async(conn, lookup))
                step = await asyncio.to_thread(step.plan)
            self._veil_planned(key, result, step)
        self._veil_rows_ready()

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        await self._veil_guard(query, params)
        self._veil_planning = True
        try:
            await super().execute(query, params, **kwargs)  # type: ignore[misc]
        except psycopg.Error as error:
            raise _withheld(self._veil_check, error) or error from None
        await self._veil_after()
        if self._veil_check is not None:
            self._veil_check.report()
        return self

    async def executemany(self, query: Any, params_seq: Iterable[Any], *, returning: bool = False) -> None:
        params_seq = list(params_seq)
        await self._veil_guard(query, params_seq[0] if params_seq else None, many=True)
        self._veil_planning = True
        try:
            await super().executemany(query, params_seq, returning=returning)  # type: ignore[misc]
        except psycopg.Error as error:
            raise _withheld(self._veil_check, error) or error from None
        await self._veil_after()
        if self._veil_check is not None:
            self._veil_check.report()

    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        raise psycopg.NotSupportedError(
            "COPY through Veil's async adapter: use the sync connection, whose copy() is guarded"
        )

    def stream(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        raise psycopg.NotSupportedError(
            "stream() through Veil's async adapter: use a named (server-side) cursor, which is guarded"
        )


class AsyncVeilCursor(_AsyncVeilCursor, psycopg.AsyncCursor[Any]):
    """An async client-side cursor that enforces Veil's decisions."""


class AsyncVeilServerCursor(_AsyncVeilCursor, psycopg.AsyncServerCursor[Any]):
    """An async server-side cursor; its batches are masked with the plan made at execute."""

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        await self._veil_guard(query, params)
        self._veil_planning = True
        try:
            await super(_AsyncVeilCursor, self).execute(query, params, **kwargs)
        except psycopg.Error as error:
            raise _withheld(self._veil_check, error) or error from None
        self._veil_planning = False
        check, result = self._veil_check, self.pgresult
        if check is not None and result is not None and result.nfields:
            planning = check.result(0, _fields(result))
            while (lookup := planning.next_lookup()) is not None:
                planning.feed(await _run_lookup_async(self.connection, lookup))
            self._veil_plans[0] = await asyncio.to_thread(planning.plan)
            self._make_row = self._make_row_maker()
            check.report()
        return self


class AsyncVeilConnection(psycopg.AsyncConnection[Any]):
    """An async psycopg connection whose cursors enforce Veil's decisions for one principal."""


def connect(
    conninfo: str = "",
    *,
    client: VeilClient,
    principal: Principal | Mapping[str, Any] | None,
    instance: str,
    database: str | None = None,
    guard_mode: str | None = None,
    **kwargs: Any,
) -> VeilConnection:
    """Connect to PostgreSQL with Veil's enforcement for ``principal``.

    ``instance`` and ``database`` name the target as Veil's catalog does (``database`` defaults
    to the connection's database name). ``principal`` None: each query runs for whoever
    ``acting_as`` names then (pooled connections). Other arguments go to ``psycopg.connect``.
    """
    kwargs.setdefault("cursor_factory", VeilCursor)
    conn = VeilConnection.connect(conninfo, **kwargs)
    conn.server_cursor_factory = VeilServerCursor
    try:
        bind(
            conn,
            client=client,
            principal=principal,
            instance=instance,
            database=database,
            guard_mode=guard_mode,
        )
    except Exception:
        conn.close()
        raise
    return conn


async def connect_async(
    conninfo: str = "",
    *,
    client: VeilClient,
    principal: Principal | Mapping[str, Any] | None,
    instance: str,
    database: str | None = None,
    guard_mode: str | None = None,
    **kwargs: Any,
) -> AsyncVeilConnection:
    """``connect`` for asyncio: an ``AsyncConnection`` whose cursors enforce Veil's decisions."""
    kwargs.setdefault("cursor_factory", AsyncVeilCursor)
    conn = await AsyncVeilConnection.connect(conninfo, **kwargs)
    conn.server_cursor_factory = AsyncVeilServerCursor
    try:
        bind(
            conn,
            client=client,
            principal=principal,
            instance=instance,
            database=database,
            guard_mode=guard_mode,
        )
    except Exception:
        await conn.close()
        raise
    return conn
