"""Template filters for the JIT pages."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from jitaccess.formatting import duration_label
from masking.models import ClassificationLevel

register = template.Library()


register.filter("duration_label", duration_label)


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
