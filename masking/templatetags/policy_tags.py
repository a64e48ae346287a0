"""Template filters of the policy pages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone

from masking.algorithms import describe
from masking.policy_diff import shown_change

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
def algorithm_label(algorithm: Any) -> str:
    """A semantic type's algorithm in words ("MD5 with salt"), never its salt."""
    return describe(algorithm)


TIMESTAMP_FIELDS = ("expires_at",)


@register.filter
def timestamp_value(value: str) -> str:
    """A document timestamp (`2026-12-31T10:00:00Z`, always UTC) as a reader expects it, in the
    server's time zone and naming it: `2026-12-31 10:00 UTC`. Text that is not one is shown as is."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return policy_value(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = timezone.localtime(moment)
    seconds = ":%S" if local.second else ""
    return local.strftime(f"%Y-%m-%d %H:%M{seconds} ") + (
        local.tzname() or timezone.get_current_timezone_name()
    )


def _get(change: Any, name: str) -> Any:
    """A field change's part, from a plan's `FieldChange` or a stored version's dict."""
    return change.get(name) if isinstance(change, dict) else getattr(change, name)


@register.simple_tag
def field_value(change: Any, side: str) -> str:
    """One side ("before" or "after") of a field change in a diff, as `policy_value` shows it.

    An algorithm is described in words so a diff never shows a salt; when the words are the same
    on both sides (only the salt changed), the fields that changed are named, not their values.
    """
    value = _get(change, side)
    if _get(change, "field") in TIMESTAMP_FIELDS and isinstance(value, str):
        return timestamp_value(value)
    if _get(change, "field") != "algorithm" or not isinstance(value, dict):
        return policy_value(value)
    label = describe(value)
    other = _get(change, "after" if side == "before" else "before")
    if isinstance(other, dict) and describe(other) == label and other != value:
        changed = sorted(k for k in set(value) | set(other) if value.get(k) != other.get(k))
        label += f" ({', '.join(changed)} changed)"
    return label


@register.filter
def shown_changes(changes: list[Any]) -> list[dict[str, Any]]:
    """Changes as the diff shows them (`masking.policy_diff.shown_change`)."""
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
