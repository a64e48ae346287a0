"""How the JIT pages, forms, services' messages and templates word durations and moments."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared import dates


def duration_label(duration: timedelta | None) -> str:
    """A duration as people say it: "45 minutes", "1 hour", "90 minutes", "36 hours", "7 days"."""
    if duration is None:
        return ""
    minutes = int(duration.total_seconds() // 60)
    if minutes % 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = minutes // 60
    if hours % 24:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    days = hours // 24
    return f"{days} day{'s' if days != 1 else ''}"


def moment_label(moment: datetime | None) -> str:
    """A moment as the pages show it: "06:51 UTC, 23 Nov" (the local time zone named)."""
    return dates.moment(moment)


def directory_ending(person: object) -> str:
    """Why a request ended when the directory deactivated its requester, as Slack, email and the
    request's page say it: no one revoked it, the person is gone."""
    return f"{person} was deactivated in the directory"
