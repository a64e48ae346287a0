"""Access reviews in Slack: each reviewer's DM with Keep and Remove per item, signed clicks answered
through `review_item_answer` (only by the item's reviewer, once, whatever is replayed), the DM
kept up to date and the escalation posted in the escalation channel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache

from audit.models import AuditEvent, Channel
from jitaccess.reviews.models import AccessReviewMessage, ItemState
from jitaccess.reviews.services import campaigns_past_deadline
from jitaccess.reviews.slack_messages import (
    ITEMS_PER_MESSAGE,
    REVIEW_KEEP,
    REVIEW_REMOVE,
    review_message_sync,
    review_messages_sweep,
)
from tests.jitaccess.reviews import Reviewed, email_action, make_reviewed
from tests.slack.conftest import ESCALATIONS, SLACK_IDS, click, post_interaction, replay, sign

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewed(slack, monkeypatch, django_capture_on_commit_callbacks) -> Reviewed:
    """The review world with Slack on; what `services._announce` hands the workers runs in-process."""

    def announce(campaign_id: int, reviewer_ids: list[int], *, escalation: bool) -> None:
        for reviewer_id in [*reviewer_ids, *([None] if escalation else [])]:
            review_message_sync(campaign_id, reviewer_id)

    monkeypatch.setattr("jitaccess.reviews.services._announce", announce)
    return make_reviewed(slack)


def dm(fake_slack, username: str):
    [message] = [m for m in fake_slack.messages if m.channel == "D" + SLACK_IDS[username][1:]]
    return message


def ephemerals(fake_slack, username: str) -> list[str]:
    return [e["text"] for e in fake_slack.ephemerals if e["user"] == SLACK_IDS[username]]


def open_campaign(reviewed, capture, **kwargs):
    with capture(execute=True):
        return reviewed.open(**kwargs)


def answer_click(action: str, item_pk: int, *, user: str) -> dict:
    return click(action, item_pk, user=SLACK_IDS[user], channel="D" + SLACK_IDS[user][1:])


def test_each_reviewer_gets_a_dm_with_keep_and_remove_for_each_of_their_items(
    reviewed, fake_slack, django_capture_on_commit_callbacks
):
    campaign = open_campaign(reviewed, django_capture_on_commit_callbacks)

    bob = dm(fake_slack, "bob")
    buttons = [e for b in bob.blocks if b["type"] == "actions" for e in b["elements"]]
    alice, carol = reviewed.item(campaign, "Alice"), reviewed.item(campaign, "Carol")
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (REVIEW_KEEP, str(carol.pk)),  # proposed for removal: first
        (REVIEW_REMOVE, str(carol.pk)),
        (REVIEW_KEEP, str(alice.pk)),
        (REVIEW_REMOVE, str(alice.pk)),
    ]
    assert "proposed for removal" in bob.shown, "carol's role membership was never used"
    assert "Last unmask" in bob.shown, "alice's was, yesterday"
    assert "Alice Engineer (alice)" in bob.shown and "Carol (carol)" in bob.shown
    assert f"https://veil.example/access-reviews/{campaign.pk}/" in bob.shown
    assert "eve" in dm(fake_slack, "carol").shown and dm(fake_slack, "dave").has_buttons
    assert AccessReviewMessage.objects.filter(campaign=campaign).exclude(ts="").count() == 3
    assert review_messages_sweep() == 0, "nothing left to post or update"
    assert len(fake_slack.calls_to("chat.postMessage")) == 3


def test_remove_in_slack_ends_the_access_and_updates_the_dm(
    reviewed, client, after_ack, fake_slack, django_capture_on_commit_callbacks
):
    campaign = open_campaign(reviewed, django_capture_on_commit_callbacks)
    alice = reviewed.item(campaign, "Alice")

    response, _, _ = post_interaction(client, answer_click(REVIEW_REMOVE, alice.pk, user="bob"))
    with django_capture_on_commit_callbacks(execute=True):
        after_ack.run()

    assert response.status_code == 200
    alice.refresh_from_db()
    assert alice.state == ItemState.REMOVED and alice.decided_channel == Channel.SLACK
    assert list(reviewed.exemption.users.all()) == [] and email_action("alice") == "mask"
    [reply] = ephemerals(fake_slack, "bob")
    assert reply.startswith(":wastebasket: Removed: Alice Engineer (alice)")
    bob = dm(fake_slack, "bob")
    assert bob.updates == 1 and "1 of 2 answered" in bob.shown
    assert str(alice.pk) not in [
        e["value"] for b in bob.blocks if b["type"] == "actions" for e in b["elements"]
    ]
    [removed] = AuditEvent.objects.filter(action="access_review.item_removed")
    assert (removed.actor_name, removed.channel) == ("Bob", Channel.SLACK)


def test_a_reviewer_clicking_an_item_that_is_not_theirs_is_refused(
    reviewed, client, after_ack, fake_slack, django_capture_on_commit_callbacks
):
    campaign = open_campaign(reviewed, django_capture_on_commit_callbacks)
    alice = reviewed.item(campaign, "Alice")  # bob's: carol clicks it (a payload she made from his)

    post_interaction(client, answer_click(REVIEW_REMOVE, alice.pk, user="carol"))
    after_ack.run()

    alice.refresh_from_db()
    assert alice.state == ItemState.PENDING and list(reviewed.exemption.users.all()) == [reviewed.world.alice]
    [reply] = ephemerals(fake_slack, "carol")
    assert "not yours to answer: it is Bob's" in reply and reply.endswith("Nothing changed.")
    [refused] = AuditEvent.objects.filter(action="access_review.answer_refused")
    assert (refused.actor_name, refused.channel, refused.target_id) == ("Carol", Channel.SLACK, str(alice.pk))


def test_a_replayed_click_changes_nothing(
    reviewed, client, after_ack, fake_slack, django_capture_on_commit_callbacks
):
    campaign = open_campaign(reviewed, django_capture_on_commit_callbacks)
    alice = reviewed.item(campaign, "Alice")
    _, body, headers = post_interaction(client, answer_click(REVIEW_REMOVE, alice.pk, user="bob"))
    with django_capture_on_commit_callbacks(execute=True):
        after_ack.run()

    again = replay(client, body, headers)  # the very same signed request, inside the window
    assert again.status_code == 200 and again.content == b""
    assert after_ack.pending == [], "refused before any listener"

    cache.clear()  # past the replay filter (say, after it expired), signed anew: the item decides
    resigned = {**headers, "X-Slack-Signature": sign(body, int(headers["X-Slack-Request-Timestamp"]))}
    assert replay(client, body, resigned).status_code == 200
    after_ack.run()

    assert len(AuditEvent.objects.filter(action="access_review.item_removed")) == 1
    assert len(AuditEvent.objects.filter(action="exemption.updated")) == 1
    assert (
        ephemerals(fake_slack, "bob")[1]
        == "You already answered: Alice Engineer (alice) is removed. Nothing changed."
    )


def test_a_click_signed_with_another_secret_is_refused(
    reviewed, client, fake_slack, django_capture_on_commit_callbacks
):
    campaign = open_campaign(reviewed, django_capture_on_commit_callbacks)
    alice = reviewed.item(campaign, "Alice")

    response, _, _ = post_interaction(
        client, answer_click(REVIEW_REMOVE, alice.pk, user="bob"), secret="forged"
    )

    assert response.status_code == 401
    assert list(reviewed.exemption.users.all()) == [reviewed.world.alice]


def test_an_unknown_slack_account_is_told_to_answer_in_veil(
    reviewed, client, after_ack, fake_slack, django_capture_on_commit_callbacks
):
    campaign = open_campaign(reviewed, django_capture_on_commit_callbacks)
    alice = reviewed.item(campaign, "Alice")

    post_interaction(client, click(REVIEW_KEEP, alice.pk, user="USTRANGER", channel="DSTRANGER"))
    after_ack.run()

    [reply] = [e["text"] for e in fake_slack.ephemerals if e["user"] == "USTRANGER"]
    assert "Veil cannot tell which Veil account is yours" in reply and campaign.ref in reply
    [refused] = AuditEvent.objects.filter(action="access_review.answer_refused")
    assert refused.detail["reason"] == "unlinked" and refused.detail["slack_user_id"] == "USTRANGER"


def test_at_the_deadline_the_escalation_channel_is_told_and_the_dms_lose_their_buttons(
    reviewed, fake_slack, time_machine, django_capture_on_commit_callbacks
):
    campaign = open_campaign(reviewed, django_capture_on_commit_callbacks, on_deadline="escalate")

    time_machine.move_to(campaign.deadline + timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        campaigns_past_deadline()

    [post] = fake_slack.in_channel(ESCALATIONS)
    assert (
        f"Access review {campaign.ref} of *shop* passed its deadline with 4 item(s) unanswered" in post.text
    )
    assert not dm(fake_slack, "bob").has_buttons and "escalated" in dm(fake_slack, "bob").shown
    assert review_messages_sweep() == 0


def test_the_sweep_posts_what_a_lost_task_did_not(
    reviewed, fake_slack, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("jitaccess.reviews.services._announce", lambda *args, **kwargs: None)
    open_campaign(reviewed, django_capture_on_commit_callbacks)
    assert fake_slack.messages == []

    assert review_messages_sweep() == 3
    assert review_messages_sweep() == 0
    assert len(fake_slack.calls_to("chat.postMessage")) == 3


def test_a_long_list_shows_the_first_items_and_says_how_many_more(
    reviewed, fake_slack, django_capture_on_commit_callbacks
):
    from identity.models import User

    many = [
        User.objects.create_user(username=f"support{n:02d}", email=f"s{n}@example.com") for n in range(70)
    ]
    reviewed.readers.users.add(*many)

    open_campaign(reviewed, django_capture_on_commit_callbacks)

    bob = dm(fake_slack, "bob")  # Slack refuses more than 50 blocks: the fake does too
    assert sum(b["type"] == "actions" for b in bob.blocks) == ITEMS_PER_MESSAGE
    assert "more waiting below these" in bob.shown
