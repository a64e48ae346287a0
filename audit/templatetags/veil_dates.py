"""The date filters every page uses (`{% load veil_dates %}`): `moment`, `timestamp` (with an
optional precision, `timestamp:"seconds"`), `day`, and `iso` for machine-readable attributes.
The formats are `shared.dates`; this library lives in audit only because audit is the lowest app
with templates, so every page may load it."""

from __future__ import annotations

from datetime import date, datetime

from django import template

from shared import dates

register = template.Library()


@register.filter(expects_localtime=True)
def moment(value: datetime | None) -> str:
    return dates.moment(value)


@register.filter(expects_localtime=True)
def timestamp(value: datetime | None, precision: str = "minutes") -> str:
    return dates.timestamp(value, precision)


@register.filter(expects_localtime=True)
def day(value: date | None) -> str:
    return dates.day(value)


@register.filter(expects_localtime=True)
def iso(value: date | None) -> str:
    """ISO 8601 with the offset, for `datetime="..."` and script attributes."""
    return value.isoformat() if value else ""
