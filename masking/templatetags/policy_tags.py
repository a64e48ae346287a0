"""Template filters of the policy pages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template

from masking.algorithms import describe
from masking.policy.diff import shown_change
from masking.policy.display import field_value, policy_value, timestamp_value

register = template.Library()


register.filter("policy_value", policy_value)
register.filter("timestamp_value", timestamp_value)
register.simple_tag(field_value, name="field_value")


@register.filter
def algorithm_label(algorithm: Any) -> str:
    """A semantic type's algorithm in words ("MD5 with salt"), never its salt."""
    return describe(algorithm)


@register.filter
def shown_changes(changes: list[Any]) -> list[dict[str, Any]]:
    """Changes as the diff shows them (`masking.policy.diff.shown_change`)."""
    return [shown_change(change) for change in changes]


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
