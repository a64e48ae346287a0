"""Keep and Remove clicks in a reviewer's DM (registered in `jitaccess.slack.interactions`, so they
take the same signed, workspace-checked, replay-filtered path as every other click, and are
recorded in the acknowledgement and applied from the record: `jitaccess.slack.clicks`).

The click is attributed through the clicker's Slack link (`linking.clicker`), then answered by
`review_item_answer`, which locks the item and refuses anyone but the person it is for (recorded
as `access_review.answer_refused`). A replayed or repeated click finds the item answered: the same
answer by the same person changes nothing, and is said so. The DM itself is updated on commit.
"""

from __future__ import annotations

from audit.models import Channel
from jitaccess.reviews.models import AccessReviewItem, ItemState
from jitaccess.reviews.services import (
    AlreadyAnswered,
    NotYourItem,
    ReviewError,
    answer_refused_record,
    review_item_answer,
)
from jitaccess.reviews.slack_messages import campaign_link
from jitaccess.slack.blocks import NOTHING_CHANGED, escape, link_target
from jitaccess.slack.linking import UNLINKED_EXPLANATION, clicker


def answer(slack_user_id: str, item_id: int | None, decision: str) -> str:
    """Answer the item as the clicker; the reply says what happened."""
    item = (
        AccessReviewItem.objects.select_related("campaign__project", "reviewer").filter(pk=item_id).first()
        if item_id is not None
        else None
    )
    if item is None:
        return f"This review item is no longer in Veil. {NOTHING_CHANGED}"
    user = clicker(slack_user_id, [item.reviewer] if item.reviewer is not None else [])
    link = f"<{link_target(campaign_link(item.campaign))}|{item.campaign.ref}>"
    if user is None:
        answer_refused_record(
            item_id=item.pk,
            user=None,
            decision=decision,
            channel=Channel.SLACK,
            reason="unlinked",
            slack_user_id=slack_user_id,
        )
        return f"{UNLINKED_EXPLANATION} You can answer in Veil: {link}. {NOTHING_CHANGED}"
    try:
        result = review_item_answer(item_id=item.pk, user=user, decision=decision, channel=Channel.SLACK)
    except (NotYourItem, AlreadyAnswered) as exc:
        return f"{escape(str(exc))} {NOTHING_CHANGED}"
    except ReviewError as exc:
        return f"{escape(exc.message)}. {NOTHING_CHANGED}"
    member = escape(result.item.member_label)
    if result.repeated:
        return (
            f"You already answered: {member} is {result.item.get_state_display().lower()}. {NOTHING_CHANGED}"
        )
    if result.item.state == ItemState.KEPT:
        return f":white_check_mark: Kept: {member}, {escape(result.item.access_label)}."
    return f":wastebasket: Removed: {member} no longer has {escape(result.item.access_label)}."
