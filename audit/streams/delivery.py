"""Delivering the audit log to streams: in chain order, at least once, one sender per destination.

A worker claims a destination by locking its row `FOR UPDATE SKIP LOCKED` and holds the lock for
one batch: it reads the events after the cursor (`last_seq`), POSTs them signed, and moves the
cursor in the same transaction only when the destination answered 2xx. So two workers never send
to one destination at once (the second skips it), a worker that dies mid-batch leaves the cursor
where it was (PostgreSQL drops the lock with the connection) and the batch is sent again: at
least once, never out of order, never with a gap. Receivers deduplicate on `seq`, which is
unique. The lock is held for at most AUDIT_STREAM_TIMEOUT_S of HTTP; nothing else waits on it but
an admin changing that destination.

Which events a batch covers: those the filter selects with `last_seq < seq <= head`, where `head`
is the chain head read first. Events become visible in seq order (each is appended under the
chain head lock and commits with it), so everything up to the head is there to read. A batch that
was not cut by the batch size covers the whole range and moves the cursor to `head` (past events
the filter leaves out); `after_seq` and `through_seq` in the payload say which range a batch
covers.

A failure backs the destination off exponentially (AUDIT_STREAM_RETRY_BASE_S doubling up to
AUDIT_STREAM_RETRY_MAX_S); after AUDIT_STREAM_MAX_FAILURES in a row it is disabled, which is an
audited event and shows in the admin, `audit streams list` and the metrics. A failing destination
only ever costs its own attempts: every destination is its own task and its own lock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.apis import event_out
from audit.chain import EVENT_FIELDS
from audit.display import action_label
from audit.filters import EVERYTHING, AuditFilter, events_matching
from audit.models import AuditStream, ChainHead, StreamFormat
from audit.streams.config import SecretUnreadable, StreamConfigError, open_secret, resolve_target, secret_key
from audit.streams.http import DeliveryError, post
from audit.streams.services import stream_disabled_by_veil

logger = logging.getLogger(__name__)

PAYLOAD_TYPE = "veil-audit-events"


@dataclass(frozen=True)
class Batch:
    after_seq: int
    through_seq: int
    events: list[dict[str, Any]]


def _head_seq() -> int:
    return ChainHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0


def _due(now: datetime) -> Q:
    return Q(enabled=True) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))


def streams_due() -> list[int]:
    """The destinations with events past their cursor and not backing off."""
    head = _head_seq()
    return list(
        AuditStream.objects.filter(_due(timezone.now()), last_seq__lt=head)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def next_batch(stream: AuditStream, *, head: int, size: int) -> Batch:
    """The events after the stream's cursor, up to `head`, as the read API gives them."""
    flt = AuditFilter(action=stream.action, project=stream.project)
    rows = list(
        events_matching(flt, EVERYTHING)
        .filter(seq__gt=stream.last_seq, seq__lte=head)
        .values(*EVENT_FIELDS)[:size]
    )
    events = [event_out(row) for row in rows]
    through = events[-1]["seq"] if len(events) == size else head
    return Batch(after_seq=stream.last_seq, through_seq=through, events=events)


def render(stream: AuditStream, batch: Batch) -> bytes:
    """The request body for the stream's format. Each event is the read API's object, intact, so
    the receiver (or a search in the SIEM) can recompute its hash."""
    if stream.format == StreamFormat.SPLUNK_HEC:
        # HEC's /services/collector/event takes events one after another in one body.
        return "\n".join(
            _json(
                {
                    "time": datetime.fromisoformat(event["occurred_at"]).timestamp(),
                    "source": "veil",
                    "sourcetype": "veil:audit",
                    "event": event,
                }
            )
            for event in batch.events
        ).encode()
    if stream.format == StreamFormat.DATADOG:
        return _json(
            [
                {
                    "ddsource": "veil",
                    "service": "veil",
                    "ddtags": f"veil_stream:{stream.name}",
                    "date": event["occurred_at"],
                    "message": f"#{event['seq']} {action_label(event['action'])} by "
                    f"{event['actor_name'] or event['actor_type']}",
                    "audit": event,
                }
                for event in batch.events
            ]
        ).encode()
    return _json(
        {
            "type": PAYLOAD_TYPE,
            "v": 1,
            "stream": stream.name,
            "after_seq": batch.after_seq,
            "through_seq": batch.through_seq,
            "events": batch.events,
        }
    ).encode()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def signature_headers(*, secret: str, message_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Standard Webhooks headers: HMAC-SHA256 of `id.timestamp.body` with the secret's key."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def stream_deliver(*, stream_id: int, budget_s: float = 30.0) -> int:
    """Send a destination batches until it is caught up, fails, or `budget_s` has passed (then the
    next beat tick goes on). Returns how many events it acknowledged. Idempotency key: the cursor,
    moved under the row lock; a duplicate task finds the row locked, or nothing past the cursor."""
    started, sent = time.monotonic(), 0
    while time.monotonic() - started < budget_s:
        delivered = _deliver_batch(stream_id)
        if delivered is None:
            break
        sent += delivered
    return sent


def _deliver_batch(stream_id: int) -> int | None:
    """One batch under the row lock. The number of events acknowledged (0 when the filter selected
    none and only the cursor moved), or None when there was nothing to do or the send failed."""
    with transaction.atomic():
        now = timezone.now()
        stream = (
            AuditStream.objects.select_for_update(skip_locked=True).filter(_due(now), pk=stream_id).first()
        )
        if stream is None:  # another worker has it, or it is disabled or backing off
            return None
        head = _head_seq()
        if head <= stream.last_seq:
            return None
        batch = next_batch(stream, head=head, size=settings.AUDIT_STREAM_BATCH_SIZE)
        if batch.events:
            try:
                _send(stream, batch)
            except (DeliveryError, StreamConfigError, SecretUnreadable) as exc:
                _failed(stream, str(exc), now=now)
                return None
        AuditStream.objects.filter(pk=stream.pk).update(
            last_seq=batch.through_seq,
            failures=0,
            next_attempt_at=None,
            last_error="",
            last_attempt_at=now if batch.events else F("last_attempt_at"),
            last_success_at=timezone.now() if batch.events else F("last_success_at"),
        )
        return len(batch.events)


def _send(stream: AuditStream, batch: Batch) -> None:
    target = resolve_target(stream.url)  # again: what the name resolves to may have changed
    body = render(stream, batch)
    message_id = f"veil-{stream.pk}-{batch.after_seq}-{batch.through_seq}"
    headers = {"Content-Type": "application/json"}
    headers |= signature_headers(
        secret=open_secret(stream.secret),
        message_id=message_id,
        body=body,
        timestamp=int(timezone.now().timestamp()),
    )
    if stream.auth_header:
        headers[stream.auth_header] = open_secret(stream.auth_value)
    post(target, body=body, headers=headers, timeout_s=settings.AUDIT_STREAM_TIMEOUT_S)


def retry_delay(failures: int) -> timedelta:
    """How long a destination waits after `failures` consecutive failures (1, 2, ...)."""
    base, cap = settings.AUDIT_STREAM_RETRY_BASE_S, settings.AUDIT_STREAM_RETRY_MAX_S
    return timedelta(seconds=min(base * 2 ** min(failures - 1, 30), cap))


def _failed(stream: AuditStream, error: str, *, now: datetime) -> None:
    """Count a failure, holding the row lock: back off, or disable after too many in a row."""
    stream.failures += 1
    stream.last_error, stream.last_attempt_at = error[:500], now
    stream.next_attempt_at = now + retry_delay(stream.failures)
    stream.save(update_fields=["failures", "last_error", "last_attempt_at", "next_attempt_at"])
    if stream.failures >= settings.AUDIT_STREAM_MAX_FAILURES:
        logger.error(
            "audit stream %s DISABLED after %s failures in a row (events after #%s not delivered): %s. "
            "Once it works: manage.py audit streams enable %s",
            stream.name,
            stream.failures,
            stream.last_seq,
            error,
            stream.name,
        )
        stream_disabled_by_veil(stream, reason=f"{stream.failures} failures in a row; last: {error}")
    else:
        logger.warning(
            "audit stream %s: batch after #%s not delivered (failure %s of %s), retry in %s: %s",
            stream.name,
            stream.last_seq,
            stream.failures,
            settings.AUDIT_STREAM_MAX_FAILURES,
            retry_delay(stream.failures),
            error,
        )
