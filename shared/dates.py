"""How a moment reads to people, wherever Veil writes one: the pages (the `veil_dates` template
filters, `audit/templatetags/veil_dates.py`), Slack and email. Always in the active time zone,
which is named, so a reader never has to guess it.

- `moment`: a moment near now, time first: "06:51 UTC, 23 Nov" (a grant starts, ends, expires);
- `timestamp`: a moment on record, sortable: "2026-11-23 06:51 UTC" (events, versions, tokens);
  `precision="seconds"` or `"microseconds"` where the record is evidence;
- `day`: a day: "2026-11-23".
"""

from __future__ import annotations

from datetime import date, datetime

from django.utils import timezone
from django.utils.formats import date_format

MOMENT = "H:i T, j M"
TIMESTAMP = {"minutes": "Y-m-d H:i T", "seconds": "Y-m-d H:i:s T", "microseconds": "Y-m-d H:i:s.u T"}
DAY = "Y-m-d"


def _local(value: date) -> date:
    if isinstance(value, datetime) and timezone.is_aware(value):
        return timezone.localtime(value)
    return value


def moment(value: datetime | None) -> str:
    """ "06:51 UTC, 23 Nov"; "" for no moment."""
    return date_format(_local(value), MOMENT) if value else ""


def timestamp(value: datetime | None, precision: str = "minutes") -> str:
    """ "2026-11-23 06:51 UTC" ("...06:51:07 UTC" to the second, "...06:51:07.123456 UTC" to the
    microsecond); "" for no moment."""
    if precision not in TIMESTAMP:
        raise ValueError(f"precision is one of {', '.join(TIMESTAMP)}, not {precision!r}")
    return date_format(_local(value), TIMESTAMP[precision]) if value else ""


def day(value: date | None) -> str:
    """ "2026-11-23"; "" for no day."""
    return date_format(_local(value), DAY) if value else ""
