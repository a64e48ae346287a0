"""Unauthenticated failures, counted instead of chained one by one.

Bad Slack signatures, failed sign-ins and refused IdP callbacks are caused by whoever can reach
Veil, as fast as they can send. Each used to append a chained event, taking the chain head lock
that every audited change needs, so a flood of them slowed the audited writes. Now a failure is one
upsert of a counter row (`FailureTally`, no chain lock), and a periodic task folds each closed
window into one chained event per action, listing the sources and reasons with their counts. The
first failure of a window from a source is also logged at once, for alerting.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditEvent, FailureTally
from audit.services import ANONYMOUS, record_event

logger = logging.getLogger(__name__)
MAX_ROWS_PER_EVENT = 100  # the most (source, reason) rows one folded event lists; the rest are summed

_UPSERT_SQL = """
INSERT INTO audit_failuretally
    (window_start, action, channel, source, username, reason, count, first_at, last_at)
VALUES (%s, %s, %s, %s, %s, %s, 1, %s, %s)
ON CONFLICT (window_start, action, source, username, reason)
DO UPDATE SET count = audit_failuretally.count + 1, last_at = EXCLUDED.last_at
RETURNING count
"""


def window_of(moment: datetime) -> datetime:
    """The start of the AUDIT_FAILURE_WINDOW_S window `moment` falls in (windows start at the epoch)."""
    width = settings.AUDIT_FAILURE_WINDOW_S
    return datetime.fromtimestamp(int(moment.timestamp()) // width * width, tz=moment.tzinfo)


def failure_count(*, action: str, channel: str, source: str | None, reason: str, username: str = "") -> int:
    """Count one unauthenticated failure; returns how many of its kind (action, source, username,
    reason) the current window holds. Takes only the counter row's lock, never the chain head's."""
    now = timezone.now()
    params = (window_of(now), action, channel, (source or "")[:64], username[:150], reason[:200], now, now)
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT_SQL, params)
        (count,) = cursor.fetchone()
    if count == 1:
        logger.warning("%s from %s (%s); more this window are counted", action, source or "?", reason)
    return int(count)


def failure_tallies_fold(*, now: datetime | None = None) -> list[AuditEvent]:
    """Append one chained `action` event per closed window and action, with the window, the total
    and the (source, reason) counts, largest first; delete the rows folded.

    Idempotency: the rows are read FOR UPDATE and deleted in the transaction that chains them, so
    two runs never fold a row twice; a failure counted late into a closed window makes a new row,
    folded by the next run into an event of its own."""
    closed_before = window_of(now or timezone.now())
    with transaction.atomic():
        rows = list(
            FailureTally.objects.select_for_update()
            .filter(window_start__lt=closed_before)
            .order_by("window_start", "action", "-count", "source", "username", "reason")
        )
        groups: dict[tuple[datetime, str], list[FailureTally]] = defaultdict(list)
        for row in rows:
            groups[(row.window_start, row.action)].append(row)
        events = [_fold(window_start, action, tallies) for (window_start, action), tallies in groups.items()]
        FailureTally.objects.filter(pk__in=[row.pk for row in rows]).delete()
    return events


def _fold(window_start: datetime, action: str, tallies: list[FailureTally]) -> AuditEvent:
    listed, rest = tallies[:MAX_ROWS_PER_EVENT], tallies[MAX_ROWS_PER_EVENT:]
    detail: dict[str, Any] = {
        "aggregated": True,
        "window_start": window_start,
        "window_end": window_start + timedelta(seconds=settings.AUDIT_FAILURE_WINDOW_S),
        "count": sum(t.count for t in tallies),
        "sources": [
            {"address": t.source, "username": t.username, "reason": t.reason, "count": t.count}
            for t in listed
        ],
    }
    if rest:
        detail["not_listed"] = {"rows": len(rest), "count": sum(t.count for t in rest)}
    return record_event(action=action, actor=ANONYMOUS, channel=tallies[0].channel, detail=detail)
