"""Sending the Slack outbox rows; called by `jitaccess.delivery` for `channel=slack`.

The outbox row is already claimed when this runs (one sender per row). Posting a request's
message has a second idempotency key, the `SlackMessage` row for (request, destination): it is
inserted and claimed before chat.postMessage and holds the `ts` afterwards, so a redelivered task,
a retry after the outbox row failed to be marked sent, or an escalation into a channel that already
has the message, posts nothing twice. The message is rendered after the claim, from the request
as committed then; a state change that commits meanwhile finds the claim and waits for the `ts` to
update it (`_update_messages`), so no message is left showing a stale state.

Slack has no idempotent post: if a call times out after sending, Slack may have posted. The claim
then lapses and the next attempt posts again. A duplicate is harmless (every click is judged on
the locked request row) but not updated; a lost message would be worse.

An outage longer than the outbox's attempts leaves rows failed with `SlackUnavailable`;
`resume_after_outage` (every minute) puts them back once Slack answers, so nothing queued is lost
however long Slack was away, and the state updates among them bring stale messages up to date.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from jitaccess.models import (
    AccessRequest,
    DeliveryState,
    Notification,
    NotificationChannel,
    NotificationKind,
    SlackMessage,
)
from jitaccess.outbox import CLAIM, DeliveryFailed, NotSent
from jitaccess.selectors.approvers import eligible_approvers
from jitaccess.slack import blocks
from jitaccess.slack.client import (
    MESSAGE_GONE,
    slack_client,
    slack_error,
    slack_unreachable,
    surely_not_delivered,
)
from jitaccess.slack.linking import slack_user_id_for
from jitaccess.slack.selectors import card_for
from jitaccess.states import State

logger = logging.getLogger(__name__)
MAX_STAGE_MENTIONS = 20  # approvers mentioned when a stage opens in a channel; the rest see the message


class SlackUnavailable(DeliveryFailed):
    """Slack was down or overloaded: the row is worth sending whenever Slack is back."""


def send(notification: Notification) -> None:
    """Deliver one Slack outbox row. Raises on anything worth another try; the outbox backs off."""
    if not settings.SLACK_ENABLED:
        raise DeliveryFailed("Slack is off (SLACK_BOT_TOKEN is empty)")
    try:
        _send(notification)
    except Exception as exc:
        if slack_unreachable(exc):
            raise SlackUnavailable(f"{slack_error(exc) or type(exc).__name__}: {exc}") from exc
        raise


def resume_after_outage() -> int:
    """Put Slack rows that ran out of attempts during an outage back in the outbox, once Slack
    answers auth.test again. Failed rows are never claimed, so resetting them races no sender."""
    stranded = Notification.objects.filter(
        channel=NotificationChannel.SLACK,
        state=DeliveryState.FAILED,
        last_error__startswith=f"{SlackUnavailable.__name__}:",
    )
    if not settings.SLACK_ENABLED or not stranded.exists():
        return 0
    try:
        slack_client().auth_test()
    except Exception as exc:
        logger.info("Slack still unavailable (%s); %s row(s) wait", exc, stranded.count())
        return 0
    return stranded.update(state=DeliveryState.PENDING, attempts=0, next_attempt_at=None, last_error="")


def _send(notification: Notification) -> None:
    request, kind = notification.request, notification.kind
    if kind == NotificationKind.STATE_CHANGED:
        _update_messages(request)
    elif kind == NotificationKind.REMINDER:
        _remind(request, notification.destination)
    elif kind == NotificationKind.ESCALATION:
        if request.state == State.PENDING:
            banner = blocks.escalation_banner(card_for(request.pk), settings.SLACK_ESCALATION_MENTION)
            _post_request_message(request, notification.destination, banner=banner)
    elif kind == NotificationKind.APPROVAL_NEEDED and notification.stage > 1:
        _ask_stage(notification)
    elif kind == NotificationKind.APPROVAL_NEEDED:
        _post_request_message(request, notification.destination or _dm_destination(notification))
    else:
        _send_notice(notification)


def _post_request_message(request: AccessRequest, destination: str, *, banner: str = "") -> None:
    message, _ = SlackMessage.objects.get_or_create(request=request, destination=destination)
    if message.ts:
        return
    _link_requester(request)

    def render() -> tuple[str, list[blocks.Block], dict[str, Any]]:
        return (*blocks.request_message(card_for(request.pk), banner=banner), {})

    if not post_once(SlackMessage.objects.filter(pk=message.pk), destination, render):
        raise DeliveryFailed(f"{request.ref} is being posted to {destination} by another worker")


def _ask_stage(notification: Notification) -> None:
    """A later stage of the request opened: ask its approvers where the request is shown. Where
    its message is already posted (a channel, or the DM of someone asked at an earlier stage too),
    a reply in its thread, broadcast to the conversation, names the stage and, in a channel,
    mentions its approvers; the message itself is updated by the state change. Elsewhere (the DM
    of someone new at this stage) the message is posted, showing the stage waiting. Like a
    reminder, the reply may be repeated if a retry follows a post Slack made but did not confirm.
    Not sent once that stage no longer waits: the message shows what happened instead."""
    request = notification.request
    if request.state != State.PENDING or request.stage != notification.stage:
        raise NotSent(f"stage {notification.stage} of {request.ref} no longer waits for approval")
    destination = notification.destination or _dm_destination(notification)
    message = SlackMessage.objects.filter(request=request, destination=destination).exclude(ts="").first()
    if message is None:
        _post_request_message(request, destination)
        return
    mentions = []
    if notification.recipient is None:  # a channel: its members are not all this stage's approvers
        approvers = eligible_approvers(request)[:MAX_STAGE_MENTIONS]
        mentions = [slack_id for person in approvers if (slack_id := slack_user_id_for(person))]
    slack_client().chat_postMessage(
        channel=message.channel,
        thread_ts=message.ts,
        reply_broadcast=True,
        text=blocks.stage_opened_text(card_for(request.pk), mentions),
    )


def _link_requester(request: AccessRequest) -> None:
    """Find the requester's Slack account before the first post, so the message mentions them
    from the start. Best effort: a failed lookup costs the mention, not the message."""
    try:
        slack_user_id_for(request.requester)
    except Exception as exc:
        logger.info("%s: requester's Slack account not looked up (%s)", request.ref, exc)


def post_once(
    row: QuerySet[Any], channel: str, render: Callable[[], tuple[str, list[blocks.Block], dict[str, Any]]]
) -> bool:
    """Post the message a row (`SlackMessage`, `SlackPolicyMessage`) stands for, at most once.

    The row is claimed first (no `ts` yet and no live claim), so a redelivered task or a sweep
    racing it posts nothing twice; `render` runs after the claim, so the message shows what is
    committed then, and returns the text, the blocks and fields to store with the `ts`. The claim
    is released when Slack surely did not post, else it lapses (a duplicate beats a lost message).
    False when someone else holds the row or it is posted already."""
    now = timezone.now()
    claimable = row.filter(ts="").filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
    if not claimable.update(claimed_until=now + CLAIM):
        return False
    text, message_blocks, shown = render()
    try:
        response = slack_client().chat_postMessage(
            channel=channel, text=text, blocks=message_blocks, unfurl_links=False, unfurl_media=False
        )
    except Exception as exc:
        if surely_not_delivered(exc):
            row.update(claimed_until=None)
        raise
    row.update(
        channel=response["channel"], ts=response["ts"], claimed_until=None, posted_at=timezone.now(), **shown
    )
    return True


def _update_messages(request: AccessRequest) -> None:
    """chat.update every posted message of the request to its current state. Waits (by failing
    for a retry) for a message another worker is posting right now: it may show the old state."""
    now = timezone.now()
    messages = list(SlackMessage.objects.filter(request=request))
    text, message_blocks = blocks.request_message(card_for(request.pk))
    for message in messages:
        if not message.ts:
            continue
        try:
            slack_client().chat_update(
                channel=message.channel, ts=message.ts, text=text, blocks=message_blocks
            )
        except Exception as exc:
            if slack_error(exc) not in MESSAGE_GONE:
                raise
            logger.info("%s: message in %s is gone (%s)", request.ref, message.destination, slack_error(exc))
    posting = [m for m in messages if not m.ts and m.claimed_until and m.claimed_until > now]
    if posting:
        raise DeliveryFailed(
            f"{request.ref}: {len(posting)} message(s) still being posted; update them after"
        )


def _remind(request: AccessRequest, destination: str) -> None:
    if request.state != State.PENDING:
        return
    message = SlackMessage.objects.filter(request=request, destination=destination).exclude(ts="").first()
    if message is None:
        return
    slack_client().chat_postMessage(
        channel=message.channel,
        thread_ts=message.ts,
        reply_broadcast=True,
        text=blocks.reminder_text(card_for(request.pk)),
    )


def _send_notice(notification: Notification) -> None:
    """A DM about the request to one person (the requester's notices, break-glass alerts)."""
    request = notification.request
    if notification.kind == NotificationKind.EXPIRING and not (
        request.state == State.APPROVED and request.expires_at and request.expires_at > timezone.now()
    ):
        # Delivered late (Slack was down): the grant has ended, the "expired" notice says so.
        raise NotSent("the grant had already ended; the notice that it ended says so")
    slack_user_id = _dm_destination(notification)
    text, message_blocks = blocks.notice_message(notification.kind, card_for(request.pk))
    slack_client().chat_postMessage(
        channel=slack_user_id, text=text, blocks=message_blocks, unfurl_links=False, unfurl_media=False
    )


def _dm_destination(notification: Notification) -> str:
    """The recipient's Slack user ID. Raises NotSent when they are not on Slack: the row then says
    nothing was sent, rather than that it was."""
    recipient = notification.recipient
    slack_user_id = slack_user_id_for(recipient) if recipient is not None else ""
    if not slack_user_id:
        raise NotSent(f"{recipient or 'the recipient'} has no Slack account Veil could find by email")
    return slack_user_id
