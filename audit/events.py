"""The event types the log knows and how each reads to people: one registry every app fills.

Each app declares its own event types with their labels in its `events.py` (`EVENT_TYPES`) and
registers them from its `AppConfig.ready`, so `audit` names no event another app writes and imports
no app above it. `audit/display.py` reads the registry for the log's pages, filters and PDF. A code
registered twice with different words is refused at start-up: two names for one event would read as
two events.
"""

from __future__ import annotations

from collections.abc import Mapping

# code -> label, filled at start-up by every app's `ready()`. Read it after Django is set up.
_LABELS: dict[str, str] = {}

EVENT_TYPES: Mapping[str, str] = {
    "audit.decisions_sealed": "Unmask decisions sealed into the log",
    "audit.exported": "Audit export written",
    "audit.archived": "Old events archived",
    "audit.stream_created": "Audit stream added",
    "audit.stream_updated": "Audit stream changed",
    "audit.stream_disabled": "Audit stream disabled",
    "audit.stream_enabled": "Audit stream enabled",
    "audit.stream_replayed": "Audit stream replayed",
    "audit.stream_deleted": "Audit stream removed",
}


def register_event_types(event_types: Mapping[str, str]) -> None:
    """Add an app's event types (code -> label). Re-registering the same words is harmless."""
    for code, label in event_types.items():
        known = _LABELS.get(code)
        if known is not None and known != label:
            raise ValueError(f"event type {code!r} registered as {known!r} and as {label!r}")
        _LABELS[code] = label


def event_labels() -> Mapping[str, str]:
    """Every registered event type and its label (live: later registrations show here too)."""
    return _LABELS
