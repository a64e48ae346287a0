"""Policy document values as people read them, on the policy pages and in Slack: text as is,
timestamps in the server's zone, algorithms in words (never a salt)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from masking.algorithms import describe
from shared import dates


def policy_value(value: Any) -> str:
    """A document value as a reader expects it: text as is, lists joined, the rest as JSON."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value or '""'
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value) if value else "(none)"
    return json.dumps(value, ensure_ascii=False)


TIMESTAMP_FIELDS = ("expires_at",)


def timestamp_value(value: str) -> str:
    """A document timestamp (`2026-12-31T10:00:00Z`, always UTC) as a reader expects it, in the
    server's time zone and naming it: `2026-12-31 10:00 UTC`. Text that is not one is shown as is."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return policy_value(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return dates.timestamp(moment, "seconds" if moment.second else "minutes")


def _get(change: Any, name: str) -> Any:
    """A field change's part, from a plan's `FieldChange` or a stored version's dict."""
    return change.get(name) if isinstance(change, dict) else getattr(change, name)


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
