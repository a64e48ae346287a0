"""One client's session: its messages checked and relayed to its upstream connection, and the
upstream's answers masked and relayed back. One module over 600 lines on purpose: the two tasks
share the queue of pending answers and the session's transaction state, and reading them side by
side is how the pairing is checked.

Two tasks run per session. The frontend task reads the client's messages, checks every statement
with the data path before it reaches the server, and forwards it; for each message that will be
answered it queues an item saying what the answer is for. The backend task reads the server's
messages in order and pairs them with those items: it builds the masking plan when a
RowDescription arrives, rewrites DataRows, and reports each query with its row count.

A refused statement is not simply dropped: it is replaced, at the same place in the stream, by
text the server rejects at once, and the backend puts the data path's error in place of the
server's. The server thus fails exactly where a refusal would have failed, so transaction state,
"skip until Sync" in a pipeline and ReadyForQuery stay the server's own.

Catalog lookups run on this session's connection when it is idle outside a transaction (so they
see its search_path), and otherwise on the target's shared catalog connections (lookups by OID
are the same from any connection; names then resolve through the account's default search_path).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from veil_sdk.algorithms import FULL_MASK
from veil_sdk.client import Principal
from veil_sdk.datapath.enforce import WITHHELD_CLASSES
from veil_sdk.proxy import wire
from veil_sdk.proxy.metrics import ProxyStats
from veil_sdk.proxy.rows import TEXT_LIKE_NAMES, TEXT_LIKE_OIDS, RowMasker, python_encoding
from veil_sdk.proxy.upstream import Upstream, UpstreamError, render

logger = logging.getLogger("veil_sdk.proxy")

REFUSED_SQL = "VEIL PROXY REFUSED THIS STATEMENT"
"""What a refused statement is replaced with: a syntax error to the server, never run."""

_INTERNAL = ("XX000", "veil-proxy could not check this statement; it was not run")
_FUNCTION_CALL = ("0A000", "veil-proxy does not relay fast-path function calls; call the function in SQL")


def _full(_value: object) -> str:
    return FULL_MASK


@dataclass
class _FullPlan:
    """Every column masked in full: what a result gets when its plan cannot be built."""

    maskers: tuple[Any, ...]
    masked_any: bool = True
    copy_refused: Any = None


# --- What each forwarded message will be answered with -------------------------------------


@dataclass(eq=False)
class _Query:
    """A simple Query: answered by results, each with its RowDescription, up to ReadyForQuery."""

    check: Any
    refusal: tuple[str, str] | None
    index: int = 0
    rows: int = 0
    """Rows of the current result (recorded with its plan when it completes)."""
    masker: RowMasker | None = None
    plan: Any = None


@dataclass(eq=False)
class _Lookup:
    """The proxy's own catalog query on the session connection (answered to the proxy)."""

    future: asyncio.Future[list[tuple[str | None, ...]]]
    rows: list[tuple[str | None, ...]] = field(default_factory=list)
    error: str | None = None


@dataclass(eq=False)
class _Step:
    """Parse/Bind/Close/Sync/Describe from the client: answered by one message the client reads."""

    kind: bytes
    refusal: tuple[str, str] | None = None


@dataclass(eq=False)
class _Portal:
    """A bound portal: its statement's text, and once executed the check its rows count towards
    (a portal fetched in chunks is one query)."""

    sql: Any
    check: Any = None


@dataclass(eq=False)
class _Execute:
    portal: _Portal
    rows: int = 0
    masker: RowMasker | None = None
    plan: Any = None


@dataclass(eq=False)
class _InjectedDescribe:
    """The proxy's Describe of a portal before each Execute: tells the plan and result formats."""

    execute: _Execute


@dataclass(eq=False)
class _Shape:
    """A RowDescription the session has seen: its fields, as the data path takes them, and the
    last plan made for it with its row masker."""

    fields: list[wire.FieldDescription]
    described: list[Any]
    plan: Any = None
    masker: RowMasker | None = None


_Item = _Query | _Lookup | _Step | _Execute | _InjectedDescribe
FLUSH_BYTES = 262_144
"""Forwarded bytes gathered before a write to the client even while the server keeps sending."""
_MAX_RESULT_SHAPES = 256  # RowDescriptions a session keeps ready-made maskers for
_UNKNOWN = object()  # a statement this session did not see parsed (SQL PREPARE): masked in full
_REFUSED_STATEMENT = b"veil_proxy_refused"
"""A refused Execute is replaced by a Parse of this (never created) statement, which fails."""


class Session:
    def __init__(
        self,
        *,
        client_reader: wire.Reader,
        client_writer: asyncio.StreamWriter,
        upstream: Upstream,
        target: Any,
        principal: Principal,
        stats: ProxyStats | None = None,
    ) -> None:
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.upstream = upstream
        self.target = target
        self.principal = principal
        self.stats = stats or ProxyStats()
        """The proxy's counters (its metrics), shared by its sessions."""
        self.pending: deque[_Item] = deque()
        self.status = upstream.status
        self.datapath = target.enforcer.session()
        self.statements: dict[bytes, Any] = {}
        """Prepared statements by name: their SQL (None when refused at Parse)."""
        self.portals: dict[bytes, _Portal] = {}
        self.swallowing = False
        self._encoding = python_encoding(upstream.parameters.get("client_encoding", "UTF8"))
        self._shapes: dict[bytes, _Shape] = {}
        """Per RowDescription seen: its fields, as the data path takes them, and the last plan
        made for it with its row masker (both depend on the client encoding)."""

    # --- Running ---------------------------------------------------------------------------

    async def run(self) -> None:
        frontend = asyncio.create_task(self._frontend())
        backend = asyncio.create_task(self._backend())
        try:
            done, _ = await asyncio.wait({frontend, backend}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None and not isinstance(task.exception(), wire.PeerClosed):
                    logger.debug("session ended: %r", task.exception())
        finally:
            for task in (frontend, backend):
                task.cancel()
            await asyncio.gather(frontend, backend, return_exceptions=True)
            for item in self.pending:
                if isinstance(item, _Lookup) and not item.future.done():
                    item.future.set_exception(UpstreamError("the session ended"))
            self.upstream.close()
            self.client_writer.close()

    async def _frontend(self) -> None:
        reader, upstream = self.client_reader, self.upstream.writer
        try:
            while True:
                kind, raw = await reader.message()
                if kind == b"X":
                    return
                await self._client_message(kind, raw)
                if not reader.buffered:
                    await upstream.drain()
        except wire.ProtocolError as exc:
            await self._send_fatal("08P01", f"protocol violation: {exc}")
        except (wire.PeerClosed, ConnectionError):
            return

    async def _client_message(self, kind: bytes, raw: bytes) -> None:
        write = self.upstream.writer.write
        if kind == b"Q":
            sql = self._text(raw, 5)
            check, refusal = await self._check(sql)
            self.pending.append(_Query(check, refusal))
            write(wire.query(REFUSED_SQL) if refusal else raw)
        elif kind == b"P":
            name, offset = wire.read_cstring(raw, 5)
            sql = self._text(raw, offset)
            # Checked at Parse (a refused statement is never created on the server) and again at
            # each Execute, whose answer may differ (a grant given or expired since).
            _, refusal = await self._check(sql)
            self.statements[name] = None if refusal else sql
            self.pending.append(_Step(b"P", refusal))
            write(wire.parse(name, REFUSED_SQL) if refusal else raw)
        elif kind == b"B":
            portal_name, offset = wire.read_cstring(raw, 5)
            statement, _ = wire.read_cstring(raw, offset)
            self.portals[portal_name] = _Portal(self.statements.get(statement, _UNKNOWN))
            self.pending.append(_Step(b"B"))
            write(raw)
        elif kind == b"E":
            name, _ = wire.read_cstring(raw, 5)
            portal = self.portals.get(name) or _Portal(_UNKNOWN)
            if portal.check is None and isinstance(portal.sql, str):
                portal.check, refusal = await self._check(portal.sql)
                if refusal is not None:
                    self.pending.append(_Step(b"P", refusal))
                    write(wire.parse(_REFUSED_STATEMENT, REFUSED_SQL))
                    return
            execute = _Execute(portal)
            self.pending.append(_InjectedDescribe(execute))
            self.pending.append(execute)
            write(wire.describe_portal(name) + raw)
        elif kind == b"D":
            if len(raw) < 7 or raw[5:6] not in (b"S", b"P"):
                raise wire.ProtocolError("invalid Describe")
            self.pending.append(_Step(b"D" + raw[5:6]))
            write(raw)
        elif kind == b"C":
            if len(raw) < 7 or raw[5:6] not in (b"S", b"P"):
                raise wire.ProtocolError("invalid Close")
            name, _ = wire.read_cstring(raw, 6)
            (self.statements if raw[5:6] == b"S" else self.portals).pop(name, None)
            self.pending.append(_Step(b"C"))
            write(raw)
        elif kind == b"S":
            self.pending.append(_Step(b"S"))
            write(raw)
        elif kind in (b"H", b"d", b"c", b"f"):  # Flush, and COPY FROM's data: relayed as is
            write(raw)
        elif kind == b"F":
            self.stats.queries["refused"] += 1
            self.pending.append(_Query(None, _FUNCTION_CALL))
            write(wire.query(REFUSED_SQL))
        else:
            raise wire.ProtocolError(f"unexpected message type {kind!r}")

    def _text(self, raw: bytes, offset: int) -> str:
        text, _ = wire.read_cstring(raw, offset)
        try:
            return text.decode(self._encoding)
        except UnicodeDecodeError:
            raise wire.ProtocolError("statement text is not in the client encoding") from None

    # --- The data path ------------------------------------------------------------------------

    async def _check(self, sql: str) -> tuple[Any, tuple[str, str] | None]:
        """The data path's check of a statement: (check, None) to forward it, (None, (sqlstate,
        message)) to refuse it. Anything unexpected refuses: the statement is not run.

        In a failed transaction the server refuses everything but ROLLBACK, so the statement
        passes unguarded (``skip``); whatever comes back anyway is still planned and masked."""
        started = time.perf_counter()
        try:
            check, refusal = await self._checked(sql)
        finally:
            self.stats.observe_check(time.perf_counter() - started)
        if refusal is not None:
            self.stats.queries["refused"] += 1
        return check, refusal

    async def _checked(self, sql: str) -> tuple[Any, tuple[str, str] | None]:
        check = None
        try:
            check = self.datapath.check(sql, self.principal)
            if self.status == b"E" and not self.pending:
                check.skip()
                return check, None
            while (lookup := check.next_lookup()) is not None:
                check.feed(await self._lookup(lookup, on_session=True))
            if check.memo is not None or check.refusal is not None:
                check.raise_if_refused()  # answered from the session's memo: nothing blocks
            else:
                await asyncio.to_thread(check.raise_if_refused)  # asks Veil: off the event loop
        except Exception as exc:
            sqlstate = getattr(exc, "sqlstate", None)
            if not isinstance(sqlstate, str):
                logger.exception("checking a statement failed; it is refused")
                return None, _INTERNAL
            if check is not None:
                with contextlib.suppress(Exception):
                    check.report_refusal(exc)
            if getattr(exc, "clause", ""):  # the guard names the clause a masked column was used in
                self.stats.guard_refusals += 1
            return None, (sqlstate, str(getattr(exc, "message", exc)))
        return check, None

    async def _lookup(self, lookup: Any, *, on_session: bool) -> list[tuple[str | None, ...]]:
        standard = self.upstream.parameters.get("standard_conforming_strings", "on") == "on"
        sql = render(lookup.sql, getattr(lookup, "params", ()), standard)
        if on_session and not self.pending and self.status == b"I" and not self.swallowing:
            item = _Lookup(asyncio.get_running_loop().create_future())
            self.pending.append(item)
            self.upstream.writer.write(wire.query(sql))
            await self.upstream.writer.drain()
            return await item.future
        return await self.target.pool.run(sql)

    async def _plan(self, check: Any, index: int, description: bytes) -> tuple[Any, RowMasker]:
        """The data path's plan for the result ``description`` (a RowDescription) announces, and
        the row masker applying it; every column masked in full when there is no plan to be had.

        A repeated statement gets the same RowDescription and, from the data path's memo, the
        same plan: the parsed fields and the masker built for that plan are kept per
        RowDescription, so such a result costs a dictionary lookup."""
        shape = self._shapes.get(description)
        if shape is None:
            fields = wire.row_description(description)
            described = [
                self.target.field(f.name.decode(self._encoding, "replace"), f.table_oid, f.attnum, f.type_oid)
                for f in fields
            ]
            if len(self._shapes) >= _MAX_RESULT_SHAPES:
                self._shapes.clear()
            shape = self._shapes[description] = _Shape(fields, described)
        fields, described = shape.fields, shape.described
        plan: Any
        if check is None or check is _UNKNOWN:
            plan = _FullPlan(tuple(_full for _ in fields))
        else:
            try:
                plan = await self._planned(check, index, described)
            except Exception:
                logger.exception("planning a result failed; every column is masked")
                plan = _FullPlan(tuple(_full for _ in fields))
        if plan is shape.plan and shape.masker is not None:
            return plan, shape.masker
        columns = []
        for position, column in enumerate(fields):
            masker = plan.maskers[position] if position < len(plan.maskers) else _full
            binary = column.format == 1
            text_like = binary and masker is not None and await self._text_like(column.type_oid)
            columns.append((masker, binary, text_like))
        shape.plan, shape.masker = plan, RowMasker(columns, self._encoding)
        return plan, shape.masker

    async def _planned(self, check: Any, index: int, described: list[Any]) -> Any:
        """Mid-result, so lookups go to the catalog connections; if those fail, the data path
        plans without them (what they were needed for is masked as untraceable)."""
        cached = check.cached_plan(index, described)
        if cached is not None:  # the statement's memo has it: no lookup, no Veil call, no thread
            return cached
        planning = check.result(index, described)
        while (lookup := planning.next_lookup()) is not None:
            try:
                rows = await self._lookup(lookup, on_session=False)
            except UpstreamError:
                logger.warning("catalog lookup failed; planning without it")
                planning.give_up()
                break
            planning.feed(rows)
        return await asyncio.to_thread(planning.plan)

    async def _text_like(self, type_oid: int) -> bool:
        if type_oid in TEXT_LIKE_OIDS:
            return True
        if type_oid < 16384:
            return False
        return await self.target.type_name(type_oid) in TEXT_LIKE_NAMES

    @staticmethod
    def _record(check: Any, plan: Any, rows: int) -> None:
        """Count a result towards its query's access event."""
        if check is None or check is _UNKNOWN or plan is None or isinstance(plan, _FullPlan):
            return
        try:
            check.record(plan, rows)
        except Exception:
            logger.exception("recording a result failed")

    @staticmethod
    def _report(check: Any) -> None:
        """Queue the query's one access event (its rows as recorded)."""
        if check is None or check is _UNKNOWN:
            return
        try:
            check.report()
        except Exception:
            logger.exception("reporting a query failed")

    # --- The server's answers -------------------------------------------------------------------

    async def _backend(self) -> None:
        """Relays the server's messages. What is forwarded is gathered and written to the client
        in one piece once nothing more is buffered from the server (or past FLUSH_BYTES); a run
        of DataRows is taken from the buffer and rewritten in one call (``RowMasker.rewrite``)."""
        reader, client = self.upstream.reader, self.client_writer
        out: list[bytes | memoryview] = []
        size = 0
        try:
            while True:
                if out and (size > FLUSH_BYTES or not reader.buffered):
                    client.write(b"".join(out))
                    out.clear()
                    size = 0
                    await client.drain()  # waits only when the client is behind
                kind, raw = await reader.message()
                head = self.pending[0] if kind == b"D" and self.pending else None
                if isinstance(head, _Query | _Execute) and head.masker is not None and not self.swallowing:
                    masker, (more, count) = head.masker, reader.data_rows()
                    head.rows += 1 + count
                    self.stats.rows += 1 + count
                    if masker.masks_anything:
                        self.stats.rows_masked += 1 + count
                        size += masker.rewrite(raw, out)
                        if more:
                            size += masker.rewrite(more, out)
                    else:
                        out += (raw, more)
                        size += len(raw) + len(more)
                    continue
                forwarded = await self._server_message(kind, raw)
                if forwarded is not None:
                    out.append(forwarded)
                    size += len(forwarded)
        except (wire.PeerClosed, wire.ProtocolError, ConnectionError, OSError):
            if self.client_writer.is_closing():
                return
            # Whole messages only were relayed: the client gets no partial row, and an error.
            if out:
                client.write(b"".join(out))
            await self._send_fatal("08006", "veil-proxy lost the connection to the database")

    async def _server_message(self, kind: bytes, raw: bytes) -> bytes | None:
        """What to send the client for this server message (None: nothing)."""
        head = self.pending[0] if self.pending else None
        if kind == b"D":
            masker = head.masker if isinstance(head, _Query | _Execute) else None
            if isinstance(head, _Lookup):
                head.rows.append(tuple(None if v is None else v.decode() for v in wire.data_row_values(raw)))
                return None
            if isinstance(head, _Query | _Execute):
                head.rows += 1
            if self.swallowing:
                return None
            if masker is None:  # a DataRow with no plan: fail closed
                masker = RowMasker([(_full, False, False)] * wire.unpack_int16(raw, 5), self._encoding)
            self.stats.rows += 1
            if not masker.masks_anything:
                return raw
            self.stats.rows_masked += 1
            pieces: list[bytes | memoryview] = []
            masker.rewrite(raw, pieces)
            return b"".join(pieces)
        if kind in (b"N", b"A"):
            return None if isinstance(head, _Lookup) else raw
        if kind == b"S":
            name, offset = wire.read_cstring(raw, 5)
            value, _ = wire.read_cstring(raw, offset)
            self.upstream.parameters[name.decode()] = value.decode("utf-8", "replace")
            if name == b"client_encoding":
                self._encoding = python_encoding(value.decode("utf-8", "replace"))
                self._shapes.clear()
            return raw
        if kind == b"Z":
            return self._ready(raw)
        if head is None:
            raise wire.ProtocolError(f"the server sent {kind!r} with nothing pending")
        if isinstance(head, _Lookup):
            if kind == b"E":
                head.error = wire.error_fields(raw).get("M", "lookup failed")
            return None
        if kind == b"E":
            return self._error(head, raw)
        if kind == b"T":
            return await self._row_description(head, raw)
        if kind == b"n":
            self.pending.popleft()
            if isinstance(head, _InjectedDescribe):  # no rows: nothing to plan
                return None
            return None if self.swallowing else raw
        if kind in (b"C", b"I", b"s"):
            return self._complete(head, kind, raw)
        if kind == b"H":
            return await self._copy_out(head, raw)
        if kind in (b"1", b"2", b"3"):
            self.pending.popleft()
        # ParameterDescription ('t') precedes the RowDescription of the same Describe; COPY data.
        return None if self.swallowing else raw

    def _ready(self, raw: bytes) -> bytes | None:
        self.status = raw[5:6]
        self.upstream.status = self.status
        # Everything up to this Sync or Query is answered (after an error the server skipped the rest).
        while self.pending:
            item = self.pending.popleft()
            if isinstance(item, _Lookup):
                if item.error is not None:
                    item.future.set_exception(UpstreamError(item.error))
                else:
                    item.future.set_result(item.rows)
                return None
            if isinstance(item, _Query):
                self._report(item.check)
                break
            if isinstance(item, _Step) and item.kind == b"S":
                break
        self.swallowing = False
        if self.status == b"I":
            self.portals.clear()
        return raw

    def _error(self, head: _Item, raw: bytes) -> bytes | None:
        refusal = head.refusal if isinstance(head, _Query | _Step) else None
        if refusal is None and not self.swallowing:  # a refusal was counted when it was decided
            self.stats.queries["error"] += 1
        raw = wire.error_response(*refusal) if refusal is not None else self._withheld(head, raw)
        if isinstance(head, _Query):
            self._record(head.check, head.plan, head.rows)
            head.masker, head.plan, head.rows = None, None, 0
            return None if self.swallowing else raw
        # Extended protocol: the server now skips everything up to Sync (see _ready).
        if isinstance(head, _Execute):
            self._finish(head, done=True)
        while self.pending and not (isinstance(self.pending[0], _Step) and self.pending[0].kind == b"S"):
            self.pending.popleft()
        return None if self.swallowing else raw

    def _withheld(self, head: _Item, raw: bytes) -> bytes:
        """The server's error, or one with its SQLSTATE and a generic message when the message
        may quote a masked value: a data exception (class 22: a failed cast names the value) or
        an integrity violation (class 23: a duplicate key names the existing one) from a statement
        that reads a column masked for the principal. Without a check to ask (a Bind, a statement
        this session did not see parsed), such an error is withheld too."""
        fields = wire.error_fields(raw)
        sqlstate = fields.get("C", "")
        if sqlstate[:2] not in WITHHELD_CLASSES:
            return raw
        check = (
            head.check
            if isinstance(head, _Query)
            else head.portal.check
            if isinstance(head, _Execute)
            else None
        )
        if check is not None and check is not _UNKNOWN:
            try:
                if not check.masks_any():
                    return raw
            except Exception:
                logger.exception("could not tell whether an error may quote a masked value; it is withheld")
        return wire.error_response(
            sqlstate,
            f"Veil withheld the server's message (SQLSTATE {sqlstate}): it may quote a value masked for you",
            fields.get("S", "ERROR"),
        )

    async def _row_description(self, head: _Item, raw: bytes) -> bytes | None:
        if isinstance(head, _Query):
            head.plan, head.masker = await self._plan(head.check, head.index, raw)
            return None if self.swallowing else raw
        self.pending.popleft()
        if isinstance(head, _InjectedDescribe):
            execute = head.execute
            execute.plan, execute.masker = await self._plan(execute.portal.check, 0, raw)
            return None
        return None if self.swallowing else raw

    def _complete(self, head: _Item, kind: bytes, raw: bytes) -> bytes | None:
        if kind == b"C" and not self.swallowing:
            self.stats.queries["ok"] += 1
        if isinstance(head, _Query):
            self._record(head.check, head.plan, head.rows)
            head.index += 1
            head.masker, head.plan, head.rows = None, None, 0
        elif isinstance(head, _Execute):
            self.pending.popleft()
            self._finish(head, done=kind != b"s")
        return None if self.swallowing else raw

    def _finish(self, execute: _Execute, *, done: bool) -> None:
        """An Execute answered: its rows recorded; the query reported unless its portal is only
        suspended (more rows to fetch)."""
        portal = execute.portal
        self._record(portal.check, execute.plan, execute.rows)
        if done:
            self._report(portal.check)
            portal.check = None  # executing the portal again is another query

    async def _copy_out(self, head: _Item, raw: bytes) -> bytes | None:
        """COPY ... TO STDOUT: relayed only when the data path lets every column leave unmasked."""
        check = (
            head.check
            if isinstance(head, _Query)
            else head.portal.check
            if isinstance(head, _Execute)
            else None
        )
        index = head.index if isinstance(head, _Query) else 0
        refusal: Any = ("42501", "veil-proxy cannot check this COPY; it was refused")
        if check is not None and check is not _UNKNOWN:
            try:
                planning = check.result(index, [])
                while (lookup := planning.next_lookup()) is not None:
                    planning.feed(await self._lookup(lookup, on_session=False))
                plan = await asyncio.to_thread(planning.plan)
                copy_refused = getattr(plan, "copy_refused", None)  # the guard may refuse at check time
                if copy_refused is not None:
                    refusal = (copy_refused.sqlstate, str(getattr(copy_refused, "message", "")))
                elif plan.masked_any:
                    refusal = ("42501", "COPY TO would send masked columns unmasked; select them instead")
                else:
                    refusal = None
            except Exception:
                logger.exception("planning a COPY failed; it is refused")
        if refusal is None:
            return None if self.swallowing else raw
        # The server is already sending; the client gets the refusal and nothing of the data.
        self.stats.queries["refused"] += 1
        self.swallowing = True
        return wire.error_response(*refusal)

    async def _send_fatal(self, sqlstate: str, text: str) -> None:
        try:
            self.client_writer.write(wire.error_response(sqlstate, text, "FATAL"))
            await self.client_writer.drain()
        except (ConnectionError, RuntimeError):
            pass
        self.client_writer.close()
