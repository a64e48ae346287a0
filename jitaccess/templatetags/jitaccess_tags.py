"""Template filters for the JIT pages."""

from __future__ import annotations

from datetime import timedelta

from django import template

from masking.models import ClassificationLevel

register = template.Library()


@register.filter
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


@register.filter
def level_label(level: int | None) -> str:
    """A request's highest classification level (-1 when nothing in scope is classified)."""
    if level is None or level < 0:
        return "unclassified"
    return str(ClassificationLevel(level).label)
