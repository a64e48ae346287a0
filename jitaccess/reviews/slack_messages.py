"""Access reviews in Slack: each reviewer's DM with Keep and Remove per item, and the escalation post.

`review_message_sync(campaign_id, reviewer_id)` is the one idempotent step, as for policy-change
messages: it posts a reviewer's DM while the campaign is open and they have none yet, and updates a
posted one whose campaign has moved on (`shown` holds the answered count and state it showed).
With `reviewer_id` None it does the same for the escalation post in the project's escalation
channel. It runs on commit after every opening, answer and deadline (`services._announce`) and for
every live campaign from `review_messages_sweep` each minute, so a lost task or a Slack outage only
delays a message. The message row is claimed before chat.postMessage (`post_once`), so a
redelivered task or a sweep racing it posts nothing twice.

A DM shows at most `ITEMS_PER_MESSAGE` items waiting for an answer (Block Kit allows 50 blocks);
each answer updates it to show the next ones, and the link opens the whole list in Veil.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.urls import reverse

from identity.models import User
from jitaccess.models import SlackRoute
from jitaccess.reviews.models import (
    AccessReviewCampaign,
    AccessReviewItem,
    AccessReviewMessage,
    CampaignState,
    ItemState,
    OnDeadline,
)
from jitaccess.slack.blocks import (
    SECTION_LIMIT,
    Block,
    button,
    cut,
    escape,
    link_target,
    mrkdwn,
    section,
    when,
)
from jitaccess.slack.client import MESSAGE_GONE, slack_client, slack_error
from jitaccess.slack.delivery import post_once
from jitaccess.slack.linking import slack_user_id_for

logger = logging.getLogger(__name__)
REVIEW_KEEP, REVIEW_REMOVE = "access_review_keep", "access_review_remove"
ITEMS_PER_MESSAGE = 20  # two blocks each, within Block Kit's 50 with the heading and the footer


def campaign_link(campaign: AccessReviewCampaign) -> str:
    return settings.SITE_URL + reverse("jitaccess:access-review", kwargs={"pk": campaign.pk})


def escalation_channel(campaign: AccessReviewCampaign) -> str:
    """The project's escalation channel (its Slack route), else `SLACK_ESCALATION_CHANNEL`."""
    route = SlackRoute.objects.filter(project=campaign.project).first()
    return (route.escalation_channel if route else "") or settings.SLACK_ESCALATION_CHANNEL


def review_message_sync(campaign_id: int, reviewer_id: int | None) -> str:
    """Bring one DM (or, for None, the escalation post) in line with the campaign: "posted",
    "updated" or "" (nothing to do). Raises on a Slack failure worth another try; the sweep
    tries again."""
    if not settings.SLACK_ENABLED:
        return ""
    campaign = AccessReviewCampaign.objects.select_related("project").filter(pk=campaign_id).first()
    if campaign is None:
        return ""
    if reviewer_id is None:
        return _sync_escalation(campaign)
    reviewer = User.objects.filter(pk=reviewer_id).first()
    if reviewer is None or not campaign.items.filter(reviewer=reviewer).exists():
        return ""
    message = AccessReviewMessage.objects.filter(campaign=campaign, reviewer=reviewer).first()
    if message is None or not message.ts:
        if campaign.state != CampaignState.OPEN:
            return ""  # a DM that would arrive after the deadline has nothing left to ask
        slack_user_id = slack_user_id_for(reviewer)
        if not slack_user_id:
            return ""  # not on Slack: the web page is their list
        message, _ = AccessReviewMessage.objects.get_or_create(campaign=campaign, reviewer=reviewer)

        def render() -> tuple[str, list[Block], dict[str, Any]]:
            campaign.refresh_from_db()
            items = _items_of(campaign, reviewer)
            return (*reviewer_message(campaign, items), {"shown": _shown(campaign, items)})

        posted = post_once(AccessReviewMessage.objects.filter(pk=message.pk), slack_user_id, render)
        return "posted" if posted else ""
    items = _items_of(campaign, reviewer)
    if message.shown == _shown(campaign, items):
        return ""
    return _update(message, *reviewer_message(campaign, items), shown=_shown(campaign, items))


def _sync_escalation(campaign: AccessReviewCampaign) -> str:
    escalated = campaign.items.filter(state=ItemState.ESCALATED).count()
    shown = f"{campaign.state}:{escalated}"
    message = AccessReviewMessage.objects.filter(campaign=campaign, reviewer__isnull=True).first()
    if message is None or not message.ts:
        channel = escalation_channel(campaign)
        if campaign.state != CampaignState.ESCALATED or not channel:
            return ""
        message, _ = AccessReviewMessage.objects.get_or_create(campaign=campaign, reviewer=None)

        def render() -> tuple[str, list[Block], dict[str, Any]]:
            count = campaign.items.filter(state=ItemState.ESCALATED).count()
            return (*escalation_message(campaign, count), {"shown": f"{campaign.state}:{count}"})

        posted = post_once(AccessReviewMessage.objects.filter(pk=message.pk), channel, render)
        return "posted" if posted else ""
    if message.shown == shown:
        return ""
    return _update(message, *escalation_message(campaign, escalated), shown=shown)


def _update(message: AccessReviewMessage, text: str, blocks: list[Block], *, shown: str) -> str:
    try:
        slack_client().chat_update(channel=message.channel, ts=message.ts, text=text, blocks=blocks)
    except Exception as exc:
        if slack_error(exc) not in MESSAGE_GONE:
            raise
        logger.info("access review message %s is gone (%s)", message.pk, slack_error(exc))
    AccessReviewMessage.objects.filter(pk=message.pk).update(shown=shown)
    return "updated"


def review_messages_sweep() -> int:
    """Every minute: post the DMs of open campaigns not posted yet, the escalation posts of
    escalated campaigns, and update posted messages whose campaign moved on. Returns how many were
    brought up to date; a failure is logged and left for the next run."""
    if not settings.SLACK_ENABLED:
        return 0
    live = AccessReviewCampaign.objects.filter(state__in=[CampaignState.OPEN, CampaignState.ESCALATED])
    pairs: set[tuple[int, int | None]] = set(
        AccessReviewItem.objects.filter(campaign__state=CampaignState.OPEN, reviewer__isnull=False)
        .values_list("campaign_id", "reviewer_id")
        .distinct()
    )
    pairs |= {(pk, None) for pk in live.filter(state=CampaignState.ESCALATED).values_list("pk", flat=True)}
    posted = AccessReviewMessage.objects.exclude(ts="").filter(
        Q(campaign__in=live) | (Q(campaign__state=CampaignState.CLOSED) & ~Q(shown__startswith="closed"))
    )
    pairs |= set(posted.values_list("campaign_id", "reviewer_id"))
    done = 0
    for campaign_id, reviewer_id in sorted(pairs, key=lambda p: (p[0], p[1] or 0)):
        try:
            done += bool(review_message_sync(campaign_id, reviewer_id))
        except Exception:
            logger.warning("access review %s: Slack message not synced", campaign_id, exc_info=True)
    return done


def _items_of(campaign: AccessReviewCampaign, reviewer: User) -> list[AccessReviewItem]:
    return list(campaign.items.filter(reviewer=reviewer))


def _shown(campaign: AccessReviewCampaign, items: list[AccessReviewItem]) -> str:
    answered = sum(1 for item in items if item.state != ItemState.PENDING)
    return f"{campaign.state}:{answered}/{len(items)}"


# --- Block Kit (pure but for the link) ---------------------------------------------------------


def usage_text(item: AccessReviewItem, unused_days: int) -> str:
    """What the decision records say of the item's use, as the DM and the web page word it."""
    if not item.usage_tracked:
        return "Break-glass only: its use is not tracked here"
    if item.last_unmask_at is not None:
        return f"Last unmask: {when(item.last_unmask_at)}"
    if item.proposed_removal:
        return f":warning: No unmask recorded in {unused_days} days: *proposed for removal*"
    return f"No unmask recorded in the last {unused_days} days" if unused_days else "Use not checked"


def _deadline_text(campaign: AccessReviewCampaign) -> str:
    after = (
        "removed"
        if campaign.on_deadline == OnDeadline.REMOVE
        else "escalated to the project's policy administrators"
    )
    return f"Answer by {when(campaign.deadline)}; what is left unanswered then is {after}."


def reviewer_message(
    campaign: AccessReviewCampaign, items: list[AccessReviewItem]
) -> tuple[str, list[Block]]:
    """A reviewer's DM: the items waiting for them with Keep and Remove, then how far they are."""
    project = campaign.project
    waiting = [item for item in items if item.state == ItemState.PENDING]
    is_open = campaign.state == CampaignState.OPEN
    intro = f"You reviewed who may see unmasked data in *{escape(str(project))}*."
    if is_open:
        intro = (
            f"You review who may see unmasked data in *{escape(str(project))}*. For each item, *Keep* the "
            f"access if it is still needed, *Remove* it if not (it ends at once). {_deadline_text(campaign)}"
        )
    blocks: list[Block] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"Access review {campaign.ref}: {project.key}"[:150]},
        },
        section(cut(intro, SECTION_LIMIT)),
    ]
    if is_open:
        for item in waiting[:ITEMS_PER_MESSAGE]:
            blocks.append(
                section(
                    cut(
                        f"*{escape(item.member_label)}*\n{escape(item.access_label)}\n"
                        + usage_text(item, campaign.unused_days),
                        SECTION_LIMIT,
                    )
                )
            )
            blocks.append(
                {
                    "type": "actions",
                    "block_id": f"access_review_item:{item.pk}",
                    "elements": [
                        button("Keep", REVIEW_KEEP, value=str(item.pk), style="primary"),
                        button(
                            "Remove",
                            REVIEW_REMOVE,
                            value=str(item.pk),
                            style="danger",
                            confirm=_remove_confirm(item),
                        ),
                    ],
                }
            )
    link = link_target(campaign_link(campaign))
    answered = len(items) - len(waiting)
    footer = f"{answered} of {len(items)} answered. "
    if is_open and len(waiting) > ITEMS_PER_MESSAGE:
        footer += f"…and {len(waiting) - ITEMS_PER_MESSAGE} more waiting below these. "
    footer += _state_line(campaign, waiting)
    blocks.append(
        {"type": "context", "elements": [mrkdwn(f"{footer}  <{link}|Open {campaign.ref} in Veil>")]}
    )
    text = (
        f"Access review {campaign.ref} of {escape(project.key)}: {len(waiting)} item(s) wait for your answer"
    )
    return (
        text + (f" by {when(campaign.deadline)}." if is_open else ". ") + _state_line(campaign, waiting)
    ), blocks


def _state_line(campaign: AccessReviewCampaign, waiting: list[AccessReviewItem]) -> str:
    if campaign.state == CampaignState.OPEN:
        return "" if waiting else ":white_check_mark: You have answered every item. Thank you."
    if campaign.state == CampaignState.CLOSED:
        return ":lock: The review is closed."
    return ":rotating_light: The deadline passed: what was left unanswered is escalated."


def _remove_confirm(item: AccessReviewItem) -> Block:
    return {
        "title": {"type": "plain_text", "text": "Remove this access?"},
        "text": {
            "type": "mrkdwn",
            "text": cut(f"*{escape(item.member_label)}* loses it at once: {escape(item.access_label)}", 300),
        },
        "confirm": {"type": "plain_text", "text": "Remove"},
        "deny": {"type": "plain_text", "text": "Back"},
    }


def escalation_message(campaign: AccessReviewCampaign, escalated: int) -> tuple[str, list[Block]]:
    """The post in the escalation channel: how many items nobody answered, where to answer them."""
    link = link_target(campaign_link(campaign))
    mention = f"{settings.SLACK_ESCALATION_MENTION} " if settings.SLACK_ESCALATION_MENTION else ""
    if escalated:
        line = (
            f":rotating_light: {mention}Access review {campaign.ref} of *{escape(campaign.project.key)}* "
            f"passed its deadline with {escalated} item(s) unanswered. A policy administrator of the project "
            f"keeps or removes each: <{link}|answer in Veil>."
        )
    else:
        line = f":white_check_mark: Access review {campaign.ref}: every escalated item has been answered."
    return line, [section(cut(line, SECTION_LIMIT))]
