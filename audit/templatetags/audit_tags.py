"""Template filters for the audit pages."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def audit_cell(value: Any) -> str:
    """A report cell as text: lists of plain values joined, structures as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return str(value)


@register.filter
def audit_label(column: str) -> str:
    """A column name as a heading: `rows_returned` -> `Rows returned`."""
    return column.replace("_", " ").capitalize()


@register.filter
def audit_is_long(value: Any) -> bool:
    """Cells that should wrap rather than widen the table."""
    return isinstance(value, (list, tuple, dict)) or (isinstance(value, str) and len(value) > 40)
