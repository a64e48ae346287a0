"""Slack messages for policy changes held by the two-person rule: announce, then keep up to date.

`policy_message_sync(change_id)` is the one idempotent step: it posts the message of a pending
change that has none yet, and updates a posted message whose change has moved on. It runs after
every submit and decision commits (a Celery task, through `masking`'s `policy_change_listeners`)
and for every change from `policy_messages_sweep` each minute, so a lost task or a Slack outage
only delays a message. The sweep also reminds approvers, once, in the message's thread, of a change
still pending `SLACK_REMINDER_AFTER_S` after it was posted (as requests are reminded). The
`SlackPolicyMessage` row is claimed before chat.postMessage, so a redelivered task or a sweep
racing the task posts nothing twice (as for requests, a post that timed out after Slack acted may be
repeated once the claim lapses: a duplicate beats a lost message).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from jitaccess.models import SlackPolicyMessage, SlackRoute
from jitaccess.slack.blocks import (
    SECTION_LIMIT,
    Block,
    button,
    confirm_dialog,
    cut,
    escape,
    link_target,
    mrkdwn,
    reason_modal,
    section,
    when,
)
from jitaccess.slack.client import MESSAGE_GONE, slack_client, slack_error, surely_not_delivered
from jitaccess.slack.delivery import post_once
from masking.models import ChangeState, PolicyChange
from masking.policy.display import field_value

logger = logging.getLogger(__name__)
POLICY_APPROVE, POLICY_REJECT, POLICY_OPEN = "policy_approve", "policy_reject", "policy_open_in_web"
POLICY_REJECT_MODAL = "policy_reject_modal"
FIELD_LINES = 5


def policy_channel(change: PolicyChange) -> str:
    """The Slack route of the first affected project that has a channel, else the approval channel."""
    route = (
        SlackRoute.objects.filter(project__key__in=change.projects)
        .exclude(channel="")
        .order_by("project__key")
        .first()
    )
    return (route.channel if route else "") or settings.SLACK_APPROVAL_CHANNEL


def change_link(change: PolicyChange) -> str:
    return settings.SITE_URL + reverse("policy:change", kwargs={"pk": change.pk})


def policy_message_sync(change_id: int) -> str:
    """Bring Slack in line with the change: "posted", "updated" or "" (nothing to do). Raises on a
    Slack failure worth another try; the next sweep tries again."""
    if not settings.SLACK_ENABLED:
        return ""
    change = PolicyChange.objects.select_related("decided_by").filter(pk=change_id).first()
    if change is None:
        return ""
    message = SlackPolicyMessage.objects.filter(change=change).first()
    if message is None or not message.ts:
        return _post(change) if change.state == ChangeState.PENDING else ""
    if message.shown_state == change.state:
        return ""
    text, blocks = policy_message(change)
    try:
        slack_client().chat_update(channel=message.channel, ts=message.ts, text=text, blocks=blocks)
    except Exception as exc:
        if slack_error(exc) not in MESSAGE_GONE:
            raise
        logger.info("policy change #%s: its message is gone (%s)", change.pk, slack_error(exc))
    SlackPolicyMessage.objects.filter(pk=message.pk).update(shown_state=change.state)
    return "updated"


def policy_messages_sweep() -> int:
    """Every minute: sync pending changes without a posted message and posted messages showing an
    old state. Returns how many were brought up to date; a failure is logged and left for next time."""
    if not settings.SLACK_ENABLED:
        return 0
    unposted = PolicyChange.objects.filter(state=ChangeState.PENDING).exclude(slack_message__ts__gt="")
    stale = SlackPolicyMessage.objects.exclude(ts="").exclude(shown_state=F("change__state"))
    ids = set(unposted.values_list("pk", flat=True)) | set(stale.values_list("change_id", flat=True))
    done = 0
    for change_id in sorted(ids):
        try:
            done += bool(policy_message_sync(change_id))
        except Exception:
            logger.warning("policy change #%s: Slack message not synced", change_id, exc_info=True)
    return done


def policy_reminders_announce() -> int:
    """Remind approvers of changes pending `SLACK_REMINDER_AFTER_S` after their message was posted:
    one reply in the message's thread, shown in the channel too. Once per change: the row is
    claimed (`reminded_at`) before the post, and released only if Slack surely did not take it."""
    if not settings.SLACK_ENABLED or not settings.SLACK_REMINDER_AFTER_S:
        return 0
    now = timezone.now()
    due = SlackPolicyMessage.objects.filter(
        change__state=ChangeState.PENDING,
        reminded_at__isnull=True,
        posted_at__lte=now - timedelta(seconds=settings.SLACK_REMINDER_AFTER_S),
    ).exclude(ts="")
    sent = 0
    for message in due.select_related("change"):
        claimed = SlackPolicyMessage.objects.filter(pk=message.pk, reminded_at__isnull=True)
        if not claimed.update(reminded_at=now):
            continue  # another sweep took it
        change = message.change
        text = (
            f":bell: Policy change #{change.pk} by {escape(change.author_name)} is still waiting for a "
            f"second person to approve or reject it (since {when(change.created_at)})."
        )
        try:
            slack_client().chat_postMessage(
                channel=message.channel, thread_ts=message.ts, reply_broadcast=True, text=text
            )
        except Exception as exc:
            if surely_not_delivered(exc):
                SlackPolicyMessage.objects.filter(pk=message.pk).update(reminded_at=None)
            logger.warning("policy change #%s: reminder not sent (%s)", change.pk, exc)
            continue
        sent += 1
    return sent


def _post(change: PolicyChange) -> str:
    channel = policy_channel(change)
    if not channel:
        return ""
    message, _ = SlackPolicyMessage.objects.get_or_create(change=change, defaults={"channel": channel})

    def render() -> tuple[str, list[Block], dict[str, Any]]:
        change.refresh_from_db()
        return (*policy_message(change), {"shown_state": change.state})

    posted = post_once(SlackPolicyMessage.objects.filter(pk=message.pk), message.channel, render)
    return "posted" if posted else ""  # not posted: posted meanwhile, or another worker is posting it


# --- Block Kit (pure but for the link) ---------------------------------------------------------


def diff_summary(changes: list[dict[str, Any]]) -> str:
    """ "2 to create, 1 to update, 0 to delete", then the first few field changes."""
    counts = {
        action: sum(1 for c in changes if c.get("action") == action)
        for action in ("create", "update", "delete")
    }
    lines = [", ".join(f"{n} to {action}" for action, n in counts.items())]
    shown = 0
    for change in changes:
        head = f"{change.get('action')} {change.get('section')} `{escape(str(change.get('key')))}`"
        fields = change.get("fields") or []
        if not fields and shown < FIELD_LINES:
            lines.append(f"• {head}")
            shown += 1
        for field in fields:
            if shown >= FIELD_LINES:
                break
            before, after = _shown(field, "before"), _shown(field, "after")
            lines.append(f"• {head}: {escape(str(field.get('field')))} `{before}` → `{after}`")
            shown += 1
    more = sum(max(1, len(c.get("fields") or [])) for c in changes) - shown
    if more > 0:
        lines.append(f"…and {more} more in Veil")
    return "\n".join(lines)


def status_line(change: PolicyChange) -> str:
    if change.state == ChangeState.PENDING:
        return ":hourglass_flowing_sand: Waiting for a second person (not the author) to approve or reject."
    who = escape(str(change.decided_by)) if change.decided_by else "someone"
    at = when(change.decided_at) if change.decided_at else "?"
    note = f": {escape(change.decision_note[:500])}" if change.decision_note else "."
    lines = {
        ChangeState.APPLIED: f":white_check_mark: Approved by {who} at {at} and applied"
        + (f" as version {change.version.number}." if change.version else "."),
        ChangeState.REJECTED: f":no_entry: Rejected by {who} at {at}{note}",
        ChangeState.WITHDRAWN: f":heavy_multiplication_x: Withdrawn by its author at {at}{note}",
        ChangeState.SUPERSEDED: f":arrows_counterclockwise: Superseded at {at}: the policy changed "
        "before approval; it must be submitted again.",
    }
    return lines.get(ChangeState(change.state), change.get_state_display())


def policy_message(change: PolicyChange) -> tuple[str, list[Block]]:
    link = link_target(change_link(change))
    scope = "every project" if change.is_global else ", ".join(change.projects) or "no project"
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Policy change #{change.pk}"}},
        section(
            cut(
                f"*{escape(change.author_name)}* proposes a policy change affecting {escape(scope)}\n"
                + "\n".join(f">{line}" for line in escape(change.message).splitlines()),
                SECTION_LIMIT,
            )
        ),
        section(cut(f"*Diff*\n{diff_summary(change.changes)}", SECTION_LIMIT)),
        {
            "type": "context",
            "elements": [mrkdwn(f"{status_line(change)}  <{link}|Open change #{change.pk} in Veil>")],
        },
    ]
    if change.state == ChangeState.PENDING:
        confirm = confirm_dialog(
            f"Apply change #{change.pk}?", "The change is applied to the live policy at once."
        )
        approve = button("Approve", POLICY_APPROVE, value=str(change.pk), style="primary", confirm=confirm)
        blocks.append(
            {
                "type": "actions",
                "block_id": f"policy_change:{change.pk}",
                "elements": [
                    approve,
                    button("Reject", POLICY_REJECT, value=str(change.pk), style="danger"),
                    button("Open in Veil", POLICY_OPEN, url=change_link(change)),
                ],
            }
        )
    text = f"Policy change #{change.pk} by {escape(change.author_name)}: {escape(change.message[:200])}. "
    text += status_line(change)
    return text, blocks


def reject_modal(change: PolicyChange, private_metadata: str) -> Block:
    return reason_modal(
        callback_id=POLICY_REJECT_MODAL,
        title=f"Reject change #{change.pk}",
        submit="Reject",
        intro=f"*{escape(change.author_name)}*: {escape(change.message[:500])}",
        field="note",
        label="Why is it rejected? The author will read this.",
        private_metadata=private_metadata,
    )


def _shown(field: dict[str, Any], side: str) -> str:
    """One side of a field change, as the web diff words it (`field_value`): an algorithm in words,
    so an md5 salt or a pseudonym key never reaches Slack; short, escaped, in backticks' terms."""
    text = "∅" if field.get(side) is None else field_value(field, side)
    text = text if len(text) <= 60 else text[:59] + "…"
    return escape(text).replace("`", "'")
