"""Template filters of the policy pages."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django import template

register = template.Library()


@register.filter
def policy_value(value: Any) -> str:
    """A document value as a reader expects it: text as is, lists joined, the rest as JSON."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value or '""'
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value) if value else "(none)"
    return json.dumps(value, ensure_ascii=False)


@register.filter
def change_counts(changes: list[dict[str, Any]]) -> str:
    """`2 created, 1 updated` for a stored version's change list."""
    words = {"create": "created", "update": "updated", "delete": "deleted", "reorder": "reordered"}
    counts: dict[str, int] = {}
    for change in changes:
        counts[change["action"]] = counts.get(change["action"], 0) + 1
    return ", ".join(f"{n} {words[action]}" for action, n in counts.items()) or "no change"


@register.filter
def short_duration(value: timedelta | None) -> str:
    """`3 min`, `2 h 5 min`, `1 d 4 h`: as precise as a person reading a dashboard needs."""
    if value is None:
        return "—"
    minutes = int(value.total_seconds() // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"
