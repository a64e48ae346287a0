"""Template filters for the JIT pages."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

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


@register.filter
def ago(moment: datetime | None) -> str:
    """How long ago, as the inbox says it: "just now" under a minute, else "5 minutes ago"."""
    if moment is None:
        return ""
    if timezone.now() - moment < timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment)} ago"
