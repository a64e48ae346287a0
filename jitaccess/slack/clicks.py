"""A decision clicked in Slack is committed before Slack gets its 200, then applied.

Slack wants its answer within 3 seconds and a decision may take longer (the on-call provider is
asked, an unlinked clicker is looked up in Slack), so it is applied after the answer. Recording it
first means a node killed between the two loses nothing: the lazy listener of the node that
answered applies it at once, and `clicks_waiting` hands whatever it did not (a dead node, a lost
thread, an error) to the periodic sweep.

Each row is applied once: under its row lock, `FOR UPDATE SKIP LOCKED`, in one transaction with
the decision, so a second taker skips it or finds it processed; a node that dies mid-way holds no
lock any more (PostgreSQL rolls its transaction back) and the sweep takes the click again. A
payload Slack retries, or one replayed past the view's replay filter, is a row of its own, as it
was a listener run of its own before: the decision services' locks make the second one change
nothing, and its clicker is told so.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from jitaccess.slack.models import SlackClick

logger = logging.getLogger(__name__)
RETRY_AFTER_S = 5  # the node that acknowledged a click applies it well within this
MAX_ATTEMPTS = 5  # failed applications (errors, not crashes) before a click is given up
KEPT_DAYS = 7  # processed clicks are deleted after this

Decide = Callable[[SlackClick], str]


def click_key(body: dict[str, Any]) -> str:
    """The payload's digest: the same in the acknowledgement and in the lazy listener, which get
    the same parsed body (the lazy listener is given nothing else)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def click_record(
    *,
    body: dict[str, Any],
    kind: str,
    slack_user_id: str,
    target_id: int | None,
    channel_id: str,
    message_ts: str,
    text: str = "",
) -> None:
    """Commit the click (inside the acknowledgement, before Slack's 200). Raises if the database
    cannot take it: Slack then gets an error and the clicker sees the click fail, rather than a
    click acknowledged and lost."""
    SlackClick.objects.create(
        key=click_key(body),
        kind=kind,
        slack_user_id=slack_user_id,
        target_id=target_id,
        channel_id=channel_id,
        message_ts=message_ts,
        text=text,
    )


def click_apply(key: str, decide: Decide) -> tuple[SlackClick, str] | None:
    """Apply the oldest click `key` that is neither processed nor being applied elsewhere:
    `decide` makes the decision and words the clicker's reply, in the same transaction as the
    click is marked processed. Returns the click and the reply, or None when there was nothing
    to do. An error in `decide` is logged and counted, and the click waits for the sweep (given
    up, and the clicker told, after MAX_ATTEMPTS); losing the database rolls everything back."""
    with transaction.atomic():
        click = (
            SlackClick.objects.select_for_update(skip_locked=True)
            .filter(key=key, processed_at__isnull=True)
            .order_by("pk")
            .first()
        )
        if click is None:
            return None
        try:
            with transaction.atomic():
                reply = decide(click)
        except Exception:
            click.attempts += 1
            logger.exception("Slack %s click %s failed (attempt %d)", click.kind, click.pk, click.attempts)
            if click.attempts < MAX_ATTEMPTS:
                click.save(update_fields=["attempts"])
                return None
            reply = "Veil could not act on this click. Nothing changed: decide in Veil."
        click.processed_at = timezone.now()
        click.save(update_fields=["attempts", "processed_at"])
    return click, reply


def clicks_waiting() -> list[str]:
    """Keys of clicks not applied RETRY_AFTER_S after they were received, oldest first; and
    processed clicks older than KEPT_DAYS deleted."""
    now = timezone.now()
    SlackClick.objects.filter(processed_at__lt=now - timedelta(days=KEPT_DAYS)).delete()
    waiting = SlackClick.objects.filter(
        processed_at__isnull=True, received_at__lt=now - timedelta(seconds=RETRY_AFTER_S)
    )
    return list(waiting.order_by("received_at").values_list("key", flat=True)[:500])
