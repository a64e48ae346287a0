"""Connections from the proxy to PostgreSQL: TLS as ``sslmode`` says, the startup exchange with
the configured account (SCRAM-SHA-256, md5, cleartext or trust), and simple queries on an idle
connection for the catalog lookups the data path asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from veil_sdk.proxy import wire
from veil_sdk.proxy.config import Instance
from veil_sdk.proxy.scram import AuthenticationError, ScramSha256, md5_password

CONNECT_TIMEOUT_S = 10.0


class UpstreamError(Exception):
    """The upstream refused the connection or a query; ``sqlstate`` is the server's when it sent one."""

    def __init__(self, message: str, sqlstate: str = "08006") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass
class Upstream:
    """An authenticated upstream connection, ready for queries."""

    reader: wire.Reader
    writer: asyncio.StreamWriter
    parameters: dict[str, str] = field(default_factory=dict)
    pid: int = 0
    secret: int = 0
    status: bytes = b"I"

    def close(self) -> None:
        if not self.writer.is_closing():
            with contextlib.suppress(ConnectionError, RuntimeError):
                self.writer.write(wire.TERMINATE)
            self.writer.close()

    async def simple_query(self, sql: str) -> list[tuple[str | None, ...]]:
        """Run one statement on this idle connection: its rows as text. Raises UpstreamError."""
        self.writer.write(wire.query(sql))
        await self.writer.drain()
        rows: list[tuple[str | None, ...]] = []
        failure: UpstreamError | None = None
        while True:
            kind, raw = await self.reader.message()
            if kind == b"D":
                rows.append(tuple(None if v is None else v.decode() for v in wire.data_row_values(raw)))
            elif kind == b"E":
                fields = wire.error_fields(raw)
                failure = UpstreamError(fields.get("M", "query failed"), fields.get("C", "XX000"))
            elif kind == b"S":
                _parameter_status(raw, self.parameters)
            elif kind == b"Z":
                self.status = raw[5:6]
                break
        if failure is not None:
            raise failure
        return rows


async def connect(
    instance: Instance, database: str, options: dict[str, str] | None = None, max_message_bytes: int = 1 << 30
) -> Upstream:
    """Open and authenticate a connection to ``database`` on ``instance`` as its configured user.
    ``options`` are further startup parameters (the client's application_name, client_encoding...)."""
    try:
        reader, writer = await asyncio.wait_for(
            # A larger stream buffer than asyncio's 64 KiB lets a bulk result arrive in reads of
            # wire.READ_BYTES; still bounded (reading pauses at twice the limit).
            asyncio.open_connection(instance.host, instance.port, limit=4 * wire.READ_BYTES),
            CONNECT_TIMEOUT_S,
        )
    except (OSError, TimeoutError) as exc:
        raise UpstreamError(f"cannot reach instance {instance.name}: {exc}") from None
    try:
        return await asyncio.wait_for(
            _start(instance, database, options or {}, reader, writer, max_message_bytes), CONNECT_TIMEOUT_S
        )
    except BaseException:
        writer.close()
        raise


async def _start(
    instance: Instance,
    database: str,
    options: dict[str, str],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    max_message_bytes: int,
) -> Upstream:
    if instance.sslmode in ("prefer", "require", "verify-ca", "verify-full"):
        writer.write(wire.int32(8) + wire.int32(wire.SSL_REQUEST))
        await writer.drain()
        answer = await reader.readexactly(1)
        if answer == b"S":
            await writer.start_tls(_client_context(instance), server_hostname=instance.host)
        elif answer != b"N" or instance.sslmode != "prefer":
            raise UpstreamError(f"instance {instance.name} does not offer TLS (sslmode {instance.sslmode})")
    upstream = Upstream(wire.Reader(reader, max_message_bytes), writer)
    writer.write(wire.startup_message({**options, "user": instance.user, "database": database}))
    await writer.drain()
    scram: ScramSha256 | None = None
    try:
        while True:
            kind, raw = await upstream.reader.message()
            if kind == b"R":
                scram = await _authenticate(instance, upstream, raw, scram)
            elif kind == b"S":
                _parameter_status(raw, upstream.parameters)
            elif kind == b"K":
                upstream.pid, upstream.secret = wire.unpack_int32(raw, 5), int.from_bytes(raw[9:13], "big")
            elif kind == b"E":
                fields = wire.error_fields(raw)
                raise UpstreamError(
                    f"instance {instance.name}: {fields.get('M', 'refused')}", fields.get("C", "08006")
                )
            elif kind == b"Z":
                upstream.status = raw[5:6]
                return upstream
            # NoticeResponse and NegotiateProtocolVersion need nothing from us.
    except (wire.PeerClosed, wire.ProtocolError, asyncio.IncompleteReadError) as exc:
        raise UpstreamError(
            f"instance {instance.name} closed the connection during startup: {exc!r}"
        ) from None


async def _authenticate(
    instance: Instance, upstream: Upstream, raw: bytes, scram: ScramSha256 | None
) -> ScramSha256 | None:
    code = wire.unpack_int32(raw, 5)
    if code == 0:
        return scram
    password = instance.password
    if password is None and code in (3, 5, 10):
        raise UpstreamError(f"instance {instance.name} asks for a password and none is configured", "28P01")
    assert password is not None or code not in (3, 5, 10)
    writer = upstream.writer
    if code == 3:
        writer.write(wire.message(b"p", wire.cstring(password or "")))
    elif code == 5:
        writer.write(wire.message(b"p", md5_password(instance.user, password or "", raw[9:13]) + b"\0"))
    elif code == 10:
        mechanisms = raw[9:].split(b"\0")
        if ScramSha256.MECHANISM.encode() not in mechanisms:
            raise UpstreamError(
                f"instance {instance.name} offers no SASL mechanism this proxy knows", "28000"
            )
        scram = ScramSha256(password or "")
        first = scram.first()
        writer.write(wire.message(b"p", wire.cstring(ScramSha256.MECHANISM) + wire.int32(len(first)) + first))
    elif code == 11 and scram is not None:
        writer.write(wire.message(b"p", scram.final(raw[9:])))
    elif code == 12 and scram is not None:
        try:
            scram.verify(raw[9:])
        except AuthenticationError as exc:
            raise UpstreamError(f"instance {instance.name}: {exc}", "28000") from None
        return scram
    else:
        raise UpstreamError(
            f"instance {instance.name} asks for an authentication this proxy does not do ({code})", "28000"
        )
    await writer.drain()
    return scram


def _client_context(instance: Instance) -> ssl.SSLContext:
    if instance.sslmode.startswith("verify"):
        context = ssl.create_default_context(cafile=instance.sslrootcert)
        context.check_hostname = instance.sslmode == "verify-full"
    else:  # prefer / require: encryption without checking who answers, as libpq does
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _parameter_status(raw: bytes, into: dict[str, str]) -> None:
    name, offset = wire.read_cstring(raw, 5)
    value, _ = wire.read_cstring(raw, offset)
    into[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")


_PLACEHOLDER = re.compile(r"%s|%%")


def render(sql: str, params: Sequence[Any], standard_strings: bool = True) -> str:
    """A lookup's SQL with its ``%s`` parameters written as literals, for the simple protocol
    (which has no parameters; the extended protocol would clobber the client's unnamed statement)."""
    values = iter(params)

    def literal(match: re.Match[str]) -> str:
        if match.group() == "%%":
            return "%"
        return _literal(next(values), standard_strings)

    text = _PLACEHOLDER.sub(literal, sql)
    if next(values, _END) is not _END:
        raise ValueError("more parameters than placeholders")
    return text


_END = object()


def _literal(value: Any, standard_strings: bool) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "ARRAY[" + ",".join(_literal(v, standard_strings) for v in value) + "]" if value else "'{}'"
    text = str(value)
    if "\0" in text:
        raise ValueError("a lookup parameter cannot contain NUL")
    text = text.replace("'", "''")
    if not standard_strings:
        text = text.replace("\\", "\\\\")
    return f"'{text}'"
