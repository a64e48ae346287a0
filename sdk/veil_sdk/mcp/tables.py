"""Rows as a table a language model reads well: a Markdown pipe table, one line per row.

Cells are cut at ``cell_chars`` code points (marked with an ellipsis), line breaks and pipes are
escaped so a value cannot break the table's shape, NULL is written ``NULL`` and bytes as hex.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_table"]


def _cell(value: Any, cell_chars: int) -> str:
    if value is None:
        return "NULL"
    text = "\\x" + bytes(value).hex() if isinstance(value, bytes | bytearray | memoryview) else str(value)
    if len(text) > cell_chars:
        text = text[:cell_chars] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "\\r").replace("\n", "\\n")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, cell_chars: int = 200) -> str:
    """``headers`` and ``rows`` as a Markdown table (just the header line when there are no rows)."""
    lines = ["| " + " | ".join(_cell(h, cell_chars) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(_cell(v, cell_chars) for v in row) + " |" for row in rows]
    return "\n".join(lines)
