"""Masking DataRows on the wire, per column, in text or binary format.

A masker (from the data path) takes the text a column's value has in text format and returns the
masked text, or None for SQL NULL. Text format: the value is decoded from the client encoding,
masked and encoded back. Binary format has no text to hand to a masker, and what goes out must
never be the original bytes, so per type:

- text-like types (text, varchar, bpchar, name, unknown, citext): their binary form is their text
  in the client encoding, so they are masked exactly as in text format;
- every other type: SQL NULL. A typed placeholder (0 for a number, an empty array...) would read
  as a real value; NULL cannot be mistaken for one. Clients wanting the masked rendering of such
  a column ask for text format (psql always does).

The loop that rewrites a run of rows (``RowMasker.rewrite``) has a compiled twin,
``veil_sdk.proxy._rows`` (C, built with the SDK when a compiler is there), used when it was built
unless ``VEIL_PROXY_PURE_PYTHON=1``; both give the same bytes (tests/proxy/test_rows.py).
``ROW_REWRITE`` says which one runs.
"""

from __future__ import annotations

import codecs
import logging
import os
import struct
from collections.abc import Callable, Sequence
from typing import Any

from veil_sdk.algorithms import FULL_MASK, Masker
from veil_sdk.proxy import wire

logger = logging.getLogger("veil_sdk.proxy")

TEXT_LIKE_OIDS = frozenset({25, 1043, 1042, 19, 705})
"""text, varchar, bpchar, name, unknown (citext has no fixed OID: found by name)."""
TEXT_LIKE_NAMES = frozenset({"text", "varchar", "bpchar", "name", "unknown", "citext"})

_PG_TO_PYTHON = {"UTF8": "utf-8", "SQL_ASCII": "utf-8", "LATIN1": "latin-1", "WIN1252": "cp1252"}
_INT32 = struct.Struct("!i")
_INT16 = struct.Struct("!h")
_HEADER = struct.Struct("!ci")


def python_encoding(client_encoding: str) -> str:
    """The Python codec for a PostgreSQL client_encoding (UTF-8 when Python has none by that name)."""
    name = _PG_TO_PYTHON.get(client_encoding.upper())
    if name is None:
        try:
            name = codecs.lookup(client_encoding).name
        except LookupError:
            name = "utf-8"
    return name


_NULL = b"\xff\xff\xff\xff"  # a field's length word for SQL NULL
_NOTHING = object()  # no mask framed yet

CompiledRewrite = Callable[..., int]


def compiled_rewrite() -> CompiledRewrite | None:
    """The compiled loop (``_rows.rewrite``), or None when it was not built."""
    try:
        from veil_sdk.proxy._rows import rewrite
    except ImportError:
        return None
    return rewrite


_COMPILED = None if os.environ.get("VEIL_PROXY_PURE_PYTHON", "") not in ("", "0") else compiled_rewrite()
ROW_REWRITE = "compiled" if _COMPILED is not None else "pure Python"
"""Which row rewrite loop this process runs (``veil-proxy run`` logs it)."""


def _masker_failed(error: BaseException) -> str:
    """A masker that fails must not let the value through: the value is masked in full."""
    logger.error("a masker failed; the value is masked in full", exc_info=error)
    return FULL_MASK


class RowMasker:
    """Rewrites one result's DataRows. ``columns`` is, per field, (masker or None, binary, text_like).

    What to do with each field is worked out once per result (``_actions``, up to the last
    masked field: None to keep it, else its masker and whether it goes out as NULL). A row is
    rewritten by copying the untouched spans between masked fields as they are (memoryview
    slices, joined once with the rest of the batch by the caller) and framing only the masked
    values; fields after the last masked one are not even parsed.

    ``compiled``: None runs the loop ``ROW_REWRITE`` names, True the compiled one (which must have
    been built), False the pure-Python one."""

    __slots__ = ("_actions", "_columns", "_compiled", "_count", "_encoding", "_positions")

    def __init__(
        self,
        columns: Sequence[tuple[Masker | None, bool, bool]],
        encoding: str,
        *,
        compiled: bool | None = None,
    ) -> None:
        if compiled is None:
            self._compiled = _COMPILED
        elif compiled:
            self._compiled = compiled_rewrite()
            if self._compiled is None:
                raise RuntimeError("veil_sdk.proxy._rows was not built")
        else:
            self._compiled = None
        self._columns = tuple(columns)
        self._positions = tuple(i for i, (masker, _, _) in enumerate(columns) if masker is not None)
        self._encoding = encoding
        self._count = len(self._columns)
        last = self._positions[-1] + 1 if self._positions else 0
        self._actions: tuple[tuple[Masker, bool, list[Any]] | None, ...] = tuple(
            None if masker is None else (masker, binary and not text_like, [_NOTHING, _NULL, 4])
            for masker, binary, text_like in self._columns[:last]
        )

    @property
    def masks_anything(self) -> bool:
        return bool(self._positions)

    def rewrite(self, rows: bytes | memoryview, out: list[bytes | memoryview]) -> int:
        """Append the masked form of ``rows`` (whole DataRow messages, back to back) to ``out``,
        as pieces to be joined; the number of bytes appended. A malformed row raises
        ``wire.ProtocolError``, and ``out`` then holds the whole rows before it, never part of a
        row."""
        if self._compiled is not None:
            try:
                return self._compiled(
                    rows, out, self._actions, self._count, self._encoding, self, _masker_failed
                )
            except struct.error:  # from a row read the careful way
                raise wire.ProtocolError("malformed DataRow") from None
        return self._rewrite(rows, out)

    def _rewrite(self, rows: bytes | memoryview, out: list[bytes | memoryview]) -> int:
        """``rewrite`` in Python (the compiled loop in _rows.c does the same)."""
        actions, count, encoding = self._actions, self._count, self._encoding
        unpack, unpack16, header, null = _INT32.unpack_from, _INT16.unpack_from, _HEADER.pack, _NULL
        append = out.append
        size = 0
        end = len(rows)
        start = 0
        whole = len(out)  # where the pieces of the row being rewritten start
        try:
            while start < end:
                whole = len(out)
                total = start + 1 + unpack(rows, start + 1)[0]  # where this row ends
                if total > end:
                    raise wire.ProtocolError("a DataRow runs past the data")
                if total < start + 7:
                    raise wire.ProtocolError("a DataRow too short for its field count")
                if unpack16(rows, start + 5)[0] != count:  # unlike its description: the careful way
                    row = self(bytes(rows[start:total]))
                    append(row)
                    size += len(row)
                    start = total
                    continue
                at = len(out)
                append(b"")  # the header, once the new length is known
                offset = start + 7
                keep = start + 5
                grown = 0
                for action in actions:
                    length = unpack(rows, offset)[0]
                    if action is None:
                        offset += 4 + length if length > 0 else 4
                        continue
                    stop = offset + 4 + length if length > 0 else offset + 4
                    if stop > total:
                        raise wire.ProtocolError("a DataRow field runs past its message")
                    masker, as_null, last = action
                    if as_null:
                        framed, framed_size = null, 4
                    else:
                        value = None if length < 0 else str(rows[offset + 4 : stop], encoding, "replace")
                        try:
                            masked = masker(value)
                        except Exception as exc:
                            masked = _masker_failed(exc)
                        if masked is last[0]:  # the same mask as the last value's: framed already
                            framed, framed_size = last[1], last[2]
                        elif masked is None:
                            framed, framed_size = null, 4
                        else:
                            data = str(masked).encode(encoding, "replace")
                            framed = _INT32.pack(len(data)) + data
                            framed_size = len(framed)
                            last[0], last[1], last[2] = masked, framed, framed_size
                    if keep != offset:
                        append(rows[keep:offset])
                    append(framed)
                    grown += framed_size - stop + offset
                    keep = offset = stop
                if keep != total:
                    append(rows[keep:total])
                out[at] = header(b"D", total - start - 1 + grown)
                size += total - start + grown
                start = total
        except struct.error:
            del out[whole:]
            raise wire.ProtocolError("malformed DataRow") from None
        except wire.ProtocolError:
            del out[whole:]
            raise
        return size

    def __call__(self, raw: bytes) -> bytes:
        """One row, field by field: for a row with more or fewer fields than its description."""
        count = wire.unpack_int16(raw, 5)
        values: list[bytes | None] = []
        offset = 7
        unpack = _INT32.unpack_from
        for _ in range(count):
            length = unpack(raw, offset)[0]
            offset += 4
            if length < 0:
                values.append(None)
            else:
                values.append(raw[offset : offset + length])
                offset += length
        columns = self._columns
        for position in self._positions:
            if position >= count:  # a row shorter than its description: nothing there to mask
                break
            masker, binary, text_like = columns[position]
            values[position] = self._mask(masker, values[position], binary, text_like)
        if count > len(columns):  # a row longer than its description: fail closed
            values[len(columns) :] = [None] * (count - len(columns))
        return wire.data_row(values)

    def _mask(
        self, masker: Masker | None, value: bytes | None, binary: bool, text_like: bool
    ) -> bytes | None:
        if binary and not text_like:
            return None
        text = None if value is None else value.decode(self._encoding, "replace")
        try:
            masked = masker(text) if masker is not None else FULL_MASK
        except Exception as exc:
            masked = _masker_failed(exc)
        return None if masked is None else str(masked).encode(self._encoding, "replace")
