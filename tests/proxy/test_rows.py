"""The row rewrite's two loops, compiled (``veil_sdk.proxy._rows``) and pure Python
(``RowMasker._rewrite``), give the same bytes for the same rows, and both give what rewriting each
row field by field gives (``RowMasker.__call__``, the careful way): NULLs, empty values, values
that are not valid in the client encoding, many fields, masked fields at every position, maskers
that fail or answer NULL, rows with more or fewer fields than described, and runs of rows split
across reads wherever a read may end."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from veil_sdk.proxy import rows as rows_module
from veil_sdk.proxy import wire
from veil_sdk.proxy.rows import RowMasker


def _constant(value: str | None) -> str:
    return "****"


def _partial(value: str | None) -> str | None:
    return None if value is None else value[:1] + "***"


def _null(value: str | None) -> None:
    return None


def _failing(value: str | None) -> str:
    raise ValueError("this masker fails")


def _not_text(value: str | None) -> int:
    return 0 if value is None else len(value)


MASKERS = [_constant, _partial, _null, _failing, _not_text, str.upper]
"""str.upper fails on None (a TypeError): masked in full like any failing masker."""

values = st.one_of(
    st.none(),
    st.just(b""),
    st.binary(max_size=40),  # often not valid in the client encoding
    st.text(max_size=20).map(lambda text: text.encode("utf-8")),
)
columns = st.lists(
    st.tuples(st.one_of(st.none(), st.sampled_from(MASKERS)), st.booleans(), st.booleans()),
    min_size=1,
    max_size=40,
)


@st.composite
def results(draw: Any) -> tuple[list[Any], str, list[bytes]]:
    """A result's columns (masker or None, binary, text-like), its client encoding, and its
    DataRows (a few with more or fewer fields than the columns)."""
    described = draw(columns)
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "cp1252"]))
    width = len(described)
    widths = st.one_of(st.just(width), st.integers(0, width + 3))
    rows = [
        wire.data_row(draw(st.lists(values, min_size=n, max_size=n)))
        for n in draw(st.lists(widths, min_size=1, max_size=30))
    ]
    return described, encoding, rows


class Reads:
    """The upstream socket as the proxy's reader sees it: these chunks, one per read."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def read(self, size: int) -> bytes:
        if not self._chunks:
            return b""
        chunk = self._chunks.pop(0)
        if len(chunk) > size:
            chunk, self._chunks[0:0] = chunk[:size], [chunk[size:]]
        return chunk


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def relayed(masker: RowMasker, chunks: list[bytes]) -> bytes:
    """What the proxy's backend relays for a stream of DataRows read in ``chunks``: the message
    read, then the run of whole rows already buffered behind it, each rewritten in one call."""

    async def relay() -> bytes:
        reader = wire.Reader(Reads(list(chunks)), 1 << 30)  # type: ignore[arg-type]
        out: list[bytes | memoryview] = []
        size = 0
        while True:
            try:
                _, raw = await reader.message()
            except wire.PeerClosed:
                break
            more, _ = reader.data_rows()
            size += masker.rewrite(raw, out)
            if more:
                size += masker.rewrite(more, out)
        data = b"".join(out)
        assert size == len(data)
        return data

    return asyncio.run(relay())


def test_the_compiled_loop_is_built() -> None:
    """The SDK's build compiles _rows.c (setup.py); a failed build would leave only the fallback."""
    assert rows_module.compiled_rewrite() is not None, "veil_sdk.proxy._rows is missing: rebuild the SDK"


@pytest.mark.parametrize(("setting", "runs"), [("1", "pure Python"), ("0", "compiled"), ("", "compiled")])
def test_veil_proxy_pure_python_forces_the_fallback(setting: str, runs: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from veil_sdk.proxy.rows import ROW_REWRITE; print(ROW_REWRITE)"],
        env={**os.environ, "VEIL_PROXY_PURE_PYTHON": setting},
        capture_output=True,
        text=True,
        check=True,
    )

    assert done.stdout.strip() == runs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(result=results(), cuts=st.lists(st.integers(0, 1 << 20), max_size=12))
def test_both_loops_send_the_same_bytes_as_rewriting_each_row_field_by_field(
    result: tuple[list[Any], str, list[bytes]], cuts: list[int]
) -> None:
    described, encoding, data_rows = result
    stream = b"".join(data_rows)
    chunks = _split(stream, cuts)
    logging.disable(logging.ERROR)  # the failing maskers' log lines
    try:
        expected = b"".join(RowMasker(described, encoding, compiled=False)(row) for row in data_rows)
        compiled = relayed(RowMasker(described, encoding, compiled=True), chunks)
        pure = relayed(RowMasker(described, encoding, compiled=False), chunks)
    finally:
        logging.disable(logging.NOTSET)

    assert compiled == pure == expected


def _corrupt(data: bytes, at: int, word: int) -> bytes:
    at %= max(len(data) - 3, 1)
    return data[:at] + word.to_bytes(4, "big", signed=True) + data[at + 4 :]


@settings(max_examples=300, deadline=None)
@given(
    result=results(),
    at=st.integers(0, 1 << 16),
    word=st.one_of(st.integers(-(1 << 31), (1 << 31) - 1), st.integers(-2, 64)),
)
def test_both_loops_refuse_a_malformed_run_alike_and_keep_only_whole_rows(
    result: tuple[list[Any], str, list[bytes]], at: int, word: int
) -> None:
    """A length word overwritten anywhere in a run (as a broken server could send it): both loops
    either rewrite it to the same bytes or refuse it with ProtocolError, having appended the
    same whole rows before the bad one."""
    described, encoding, data_rows = result
    run = _corrupt(b"".join(data_rows), at, word)
    outcomes = []
    logging.disable(logging.ERROR)
    try:
        for compiled in (True, False):
            out: list[bytes | memoryview] = []
            try:
                size = RowMasker(described, encoding, compiled=compiled).rewrite(run, out)
            except wire.ProtocolError:
                size = -1
            outcomes.append((size, b"".join(out)))
    finally:
        logging.disable(logging.NOTSET)

    assert outcomes[0] == outcomes[1]
    if outcomes[0][0] >= 0:
        assert outcomes[0][0] == len(outcomes[0][1])


def test_a_masker_that_fails_masks_in_full_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    row = wire.data_row([b"1", b"secret"])
    for compiled in (True, False):
        out: list[bytes | memoryview] = []
        caplog.clear()
        RowMasker([(None, False, False), (_failing, False, False)], "utf-8", compiled=compiled).rewrite(
            row, out
        )

        assert wire.data_row_values(b"".join(out)) == [b"1", rows_module.FULL_MASK.encode()]
        assert "a masker failed" in caplog.text and "this masker fails" in caplog.text
