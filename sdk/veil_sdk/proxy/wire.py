"""PostgreSQL frontend/backend protocol (version 3.0): framing, and the few messages the proxy
builds or reads field by field.

Everything else is relayed as the bytes it arrived as: the proxy only looks inside the messages
it has to (startup, authentication, queries, row descriptions, data rows), which keeps it exact
for whatever a client or server sends and cheap on the row path.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

PROTOCOL_3_0 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102

MAX_STARTUP_BYTES = 10_000  # the server's own limit on a startup packet

_INT32 = struct.Struct("!i")
_INT16 = struct.Struct("!h")
_HEADER = struct.Struct("!ci")


class ProtocolError(Exception):
    """A peer sent something that is not the protocol: the connection cannot go on."""


class PeerClosed(Exception):
    """The peer closed the connection."""


READ_BYTES = 262_144
"""How much one read from a stream asks for: a bulk result arrives in few, large reads."""
_DATA_ROW = ord("D")


class Reader:
    """Reads whole messages from a stream. Holds at most one read's worth beyond the message it
    returns, so a large result streams through in bounded memory.

    What was read is kept as one immutable ``bytes`` and a position in it, not a bytearray
    trimmed after every message: taking a message is a slice, and ``data_rows`` hands out the
    DataRows already read as memoryviews of it, without copying them."""

    __slots__ = ("_data", "_max", "_pos", "_stream", "_view")

    def __init__(self, stream: asyncio.StreamReader, max_message_bytes: int) -> None:
        self._stream = stream
        self._data = b""
        self._view = memoryview(self._data)
        self._pos = 0
        self._max = max_message_bytes

    @property
    def buffered(self) -> bool:
        """Whether a whole message is already buffered (so reading it will not wait)."""
        data, pos = self._data, self._pos
        if len(data) - pos < 5:
            return False
        return len(data) - pos >= 1 + _INT32.unpack_from(data, pos + 1)[0]

    async def _fill(self, size: int) -> None:
        """Read until ``size`` bytes are buffered (the parts joined once, so a large message
        costs one copy, not one per read)."""
        have = len(self._data) - self._pos
        if have >= size:
            return
        parts: list[bytes | memoryview] = [self._view[self._pos :]] if have else []
        while have < size:
            chunk = await self._stream.read(max(READ_BYTES, size - have))
            if not chunk:
                raise PeerClosed
            parts.append(chunk)
            have += len(chunk)
        self._data = b"".join(parts)  # a lone chunk is not copied
        self._view = memoryview(self._data)
        self._pos = 0

    async def startup(self) -> bytes:
        """The untyped first message (StartupMessage, SSLRequest, CancelRequest): its body."""
        await self._fill(4)
        length = _INT32.unpack_from(self._data, self._pos)[0]
        if not 8 <= length <= MAX_STARTUP_BYTES:
            raise ProtocolError("invalid startup packet length")
        await self._fill(length)
        start = self._pos
        self._pos = start + length
        return self._data[start + 4 : start + length]

    async def message(self) -> tuple[bytes, bytes]:
        """The next typed message: (type byte, whole message including its header)."""
        await self._fill(5)
        length = _INT32.unpack_from(self._data, self._pos + 1)[0]
        if length < 4:
            raise ProtocolError("invalid message length")
        if length > self._max:
            raise ProtocolError(f"message of {length} bytes is over the limit of {self._max}")
        await self._fill(1 + length)
        start = self._pos
        self._pos = start + 1 + length
        raw = self._data[start : start + 1 + length]
        return raw[:1], raw

    def data_rows(self) -> tuple[memoryview, int]:
        """The whole DataRows buffered next, back to back, as one view of what was read (no
        copy, no wait), and how many; empty when the next message is something else or not
        all there yet."""
        data, start, end, limit = self._data, self._pos, len(self._data), self._max
        unpack = _INT32.unpack_from
        pos, count = start, 0
        while end - pos >= 5 and data[pos] == _DATA_ROW:
            length = unpack(data, pos + 1)[0]
            stop = pos + 1 + length
            if stop > end or not 4 <= length <= limit:  # incomplete, or message() will refuse it
                break
            pos = stop
            count += 1
        self._pos = pos
        return self._view[start:pos], count

    def take_buffered(self) -> bytes:
        """Bytes read past the last message (used when switching a stream to TLS)."""
        data = self._data[self._pos :]
        self._data, self._view, self._pos = b"", memoryview(b""), 0
        return data


def message(kind: bytes, body: bytes = b"") -> bytes:
    return _HEADER.pack(kind, 4 + len(body)) + body


def cstring(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    if b"\0" in data:
        raise ValueError("a protocol string cannot contain a NUL byte")
    return data + b"\0"


def read_cstring(data: bytes, offset: int) -> tuple[bytes, int]:
    end = data.find(b"\0", offset)
    if end < 0:
        raise ProtocolError("unterminated string")
    return data[offset:end], end + 1


def startup_parameters(body: bytes) -> dict[str, str]:
    """The key/value pairs of a StartupMessage body (after its version)."""
    parameters: dict[str, str] = {}
    offset = 4
    while True:
        key, offset = read_cstring(body, offset)
        if not key:
            break
        value, offset = read_cstring(body, offset)
        try:
            parameters[key.decode()] = value.decode()
        except UnicodeDecodeError:
            raise ProtocolError("startup parameters must be UTF-8") from None
    if offset != len(body):
        raise ProtocolError("trailing bytes after the startup parameters")
    return parameters


def startup_message(parameters: dict[str, str]) -> bytes:
    body = _INT32.pack(PROTOCOL_3_0)
    body += b"".join(cstring(k) + cstring(v) for k, v in parameters.items()) + b"\0"
    return _INT32.pack(4 + len(body)) + body


def int32(value: int) -> bytes:
    return _INT32.pack(value)


def unpack_int32(data: bytes, offset: int) -> int:
    return int(_INT32.unpack_from(data, offset)[0])


def unpack_int16(data: bytes, offset: int) -> int:
    return int(_INT16.unpack_from(data, offset)[0])


# --- Messages the proxy writes ---------------------------------------------------------------


def error_response(sqlstate: str, text: str, severity: str = "ERROR") -> bytes:
    body = b"S" + cstring(severity) + b"V" + cstring(severity) + b"C" + cstring(sqlstate)
    body += b"M" + cstring(text.replace("\0", "")) + b"\0"
    return message(b"E", body)


def ready_for_query(status: bytes) -> bytes:
    return message(b"Z", status)


def authentication(code: int, data: bytes = b"") -> bytes:
    return message(b"R", _INT32.pack(code) + data)


def backend_key_data(pid: int, secret: int) -> bytes:
    return message(b"K", struct.pack("!iI", pid, secret))


def query(sql: str) -> bytes:
    return message(b"Q", cstring(sql))


def describe_portal(name: bytes) -> bytes:
    return message(b"D", b"P" + name + b"\0")


def parse(name: bytes, sql: str) -> bytes:
    return message(b"P", name + b"\0" + cstring(sql) + _INT16.pack(0))


TERMINATE = message(b"X")


# --- Messages the proxy reads ----------------------------------------------------------------


def error_fields(raw: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse or NoticeResponse, by their one-letter codes."""
    fields: dict[str, str] = {}
    offset = 5
    while offset < len(raw) and raw[offset] != 0:
        code = chr(raw[offset])
        value, offset = read_cstring(raw, offset + 1)
        fields[code] = value.decode("utf-8", "replace")
    return fields


@dataclass(frozen=True, slots=True)
class FieldDescription:
    """One column of a RowDescription."""

    name: bytes
    table_oid: int
    attnum: int
    type_oid: int
    type_size: int
    type_modifier: int
    format: int


_FIELD = struct.Struct("!IhIhih")


def row_description(raw: bytes) -> list[FieldDescription]:
    count = unpack_int16(raw, 5)
    fields = []
    offset = 7
    for _ in range(count):
        name, offset = read_cstring(raw, offset)
        table_oid, attnum, type_oid, size, modifier, fmt = _FIELD.unpack_from(raw, offset)
        offset += _FIELD.size
        fields.append(FieldDescription(name, table_oid, attnum, type_oid, size, modifier, fmt))
    return fields


def data_row_values(raw: bytes) -> list[bytes | None]:
    count = unpack_int16(raw, 5)
    values: list[bytes | None] = []
    offset = 7
    for _ in range(count):
        length = unpack_int32(raw, offset)
        offset += 4
        if length < 0:
            values.append(None)
        else:
            values.append(raw[offset : offset + length])
            offset += length
    return values


def data_row(values: list[bytes | None]) -> bytes:
    parts = [_INT16.pack(len(values))]
    for value in values:
        if value is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            parts.append(_INT32.pack(len(value)))
            parts.append(value)
    return message(b"D", b"".join(parts))


def command_rows(raw: bytes) -> int:
    """The row count a CommandComplete tag ends with (SELECT 3, UPDATE 2, COPY 5), or 0."""
    tag = raw[5:-1].rsplit(b" ", 1)
    if len(tag) == 2 and tag[1].isdigit():
        return int(tag[1])
    return 0
