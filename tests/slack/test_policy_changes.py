"""Policy changes held by the two-person rule, in Slack: announced once, decided by signed clicks
through `policy_change_approve` / `policy_change_reject`, the message kept up to date."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent, Channel
from identity.services import actor_for
from jitaccess.models import SlackPolicyMessage
from jitaccess.slack.policy_messages import (
    POLICY_APPROVE,
    POLICY_REJECT,
    POLICY_REJECT_MODAL,
    diff_summary,
    policy_message_sync,
    policy_messages_sweep,
    policy_reminders_announce,
)
from masking.models import ChangeState, MaskingRule, PolicyChange, ProjectPolicySettings, SemanticType
from masking.policy.document import export_document, parse_document
from masking.services.policy_changes import policy_change_reject, policy_submit
from tests.factories import grant_project_perm
from tests.slack.conftest import APPROVALS, SLACK_IDS, click, post_interaction

pytestmark = pytest.mark.django_db


@pytest.fixture
def held(slack, monkeypatch):
    """The two-person rule on the shop; Dave (author) and Carol may both administer its policy.
    The on-commit task runs in-process, as a worker would run it."""
    monkeypatch.setattr("jitaccess.slack.tasks.enqueue_policy_message", policy_message_sync)
    grant_project_perm(slack.carol, "administer_policy", slack.project)
    ProjectPolicySettings.objects.create(project=slack.project, two_person_rule=True)
    return slack


def submit(world, captured, message: str = "Mask phones <!channel>") -> PolicyChange:
    document = export_document()
    document["rules"].append(
        {
            "title": "Phones",
            "condition": 'resource.column_name == "phone"',
            "semantic_type": SemanticType.objects.first().key,
            "enabled": True,
        }
    )
    with captured(execute=True):
        submission = policy_submit(
            document=parse_document(document),
            message=message,
            actor=actor_for(world.dave),
            channel=Channel.WEB,
            author=world.dave,
        )
    assert submission.status == "pending"
    return submission.change


def test_a_long_message_full_of_markup_is_still_announced_and_cut_visibly(
    held, fake_slack, django_capture_on_commit_callbacks
):
    submit(held, django_capture_on_commit_callbacks, message="Mask <&> " * 300)

    [message] = fake_slack.in_channel(APPROVALS)  # Slack refuses a section over 3,000 characters
    assert message.has_buttons
    assert "Mask &lt;&amp;&gt; Mask" in message.shown and "…" in message.shown


def ephemerals(fake_slack, user):
    return [e["text"] for e in fake_slack.ephemerals if e["user"] == SLACK_IDS[user]]


def test_a_held_change_is_announced_once(held, fake_slack, django_capture_on_commit_callbacks):
    change = submit(held, django_capture_on_commit_callbacks)

    [message] = fake_slack.in_channel(APPROVALS)
    assert message.has_buttons
    assert "dave" in message.shown and "&lt;!channel&gt;" in message.shown, "the message is escaped"
    assert "<!channel>" not in message.text
    assert "1 to create, 0 to update, 0 to delete" in message.shown
    assert f"https://veil.example/policy/changes/{change.pk}/" in message.shown
    row = SlackPolicyMessage.objects.get(change=change)
    assert (row.channel, row.ts, row.shown_state) == (APPROVALS, message.ts, ChangeState.PENDING)

    assert policy_message_sync(change.pk) == "", "a redelivered task posts nothing"
    assert policy_messages_sweep() == 0, "nor does the periodic sweep"
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


def test_the_sweep_posts_what_a_lost_task_did_not(
    held, fake_slack, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("jitaccess.slack.tasks.enqueue_policy_message", lambda change_id: None)
    change = submit(held, django_capture_on_commit_callbacks)
    assert fake_slack.in_channel(APPROVALS) == []

    assert policy_messages_sweep() == 1
    assert policy_messages_sweep() == 0
    assert len(fake_slack.in_channel(APPROVALS)) == 1
    assert SlackPolicyMessage.objects.get(change=change).ts


def test_a_change_still_pending_is_reminded_once_in_its_thread(
    held, settings, fake_slack, time_machine, django_capture_on_commit_callbacks
):
    change = submit(held, django_capture_on_commit_callbacks)
    [message] = fake_slack.in_channel(APPROVALS)
    assert policy_reminders_announce() == 0, "not yet due"

    time_machine.move_to(timezone.now() + timedelta(seconds=settings.SLACK_REMINDER_AFTER_S + 1))
    assert policy_reminders_announce() == 1
    assert policy_reminders_announce() == 0, "once per change"

    [reminder] = fake_slack.replies()
    assert reminder.thread_ts == message.ts
    assert f"Policy change #{change.pk}" in reminder.text and "still waiting" in reminder.text


def test_a_decided_change_is_not_reminded(
    held, settings, fake_slack, time_machine, django_capture_on_commit_callbacks
):
    change = submit(held, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        policy_change_reject(change_id=change.pk, user=held.carol, note="Too broad", channel=Channel.WEB)

    time_machine.move_to(timezone.now() + timedelta(seconds=settings.SLACK_REMINDER_AFTER_S + 1))

    assert policy_reminders_announce() == 0
    assert fake_slack.replies() == []


def test_approve_in_slack_applies_the_change_and_updates_the_message(
    held, client, after_ack, fake_slack, django_capture_on_commit_callbacks
):
    change = submit(held, django_capture_on_commit_callbacks)
    [message] = fake_slack.in_channel(APPROVALS)

    post_interaction(client, click(POLICY_APPROVE, change.pk, user="UCAROL", message_ts=message.ts))
    with django_capture_on_commit_callbacks(execute=True):
        after_ack.run()

    change.refresh_from_db()
    assert change.state == ChangeState.APPLIED
    assert change.decided_by == held.carol
    assert MaskingRule.objects.filter(title="Phones").exists()
    [reply] = ephemerals(fake_slack, "carol")
    assert reply.startswith(f":white_check_mark: You approved change #{change.pk}")
    assert not message.has_buttons and message.updates == 1
    assert "Approved by" in message.shown


def test_the_author_cannot_approve_in_slack(
    held, client, after_ack, fake_slack, django_capture_on_commit_callbacks
):
    change = submit(held, django_capture_on_commit_callbacks)

    post_interaction(client, click(POLICY_APPROVE, change.pk, user="UDAVE"))
    after_ack.run()

    change.refresh_from_db()
    assert change.state == ChangeState.PENDING
    assert not MaskingRule.objects.filter(title="Phones").exists()
    [reply] = ephemerals(fake_slack, "dave")
    assert "cannot approve your own" in reply and reply.endswith("Nothing changed.")
    assert fake_slack.in_channel(APPROVALS)[0].has_buttons
    [refused] = AuditEvent.objects.filter(action="slack.action.refused")
    assert (refused.actor_name, refused.target_type) == ("dave", "policy_change")
    assert refused.target_id == str(change.pk)
    assert refused.detail["action"] == "approve" and "your own" in refused.detail["reason"]


def test_a_click_is_attributed_by_email_even_when_an_admin_linked_another_slack_account(
    held, client, after_ack, fake_slack, django_capture_on_commit_callbacks
):
    """As for requests: Slack vouches for the email of the account that clicked, so the author is
    recognised (and refused as the author), not told Veil cannot tell who they are."""
    from audit.services import SYSTEM
    from jitaccess.models import SlackLinkMethod, SlackUserLink
    from jitaccess.slack.services import slack_user_link

    change = submit(held, django_capture_on_commit_callbacks)
    slack_user_link(
        slack_user_id="UDAVE2",
        user=held.dave,
        method=SlackLinkMethod.ADMIN,
        actor=SYSTEM,
        channel=Channel.CLI,
    )

    post_interaction(client, click(POLICY_APPROVE, change.pk, user="UDAVE"))
    after_ack.run()

    [reply] = ephemerals(fake_slack, "dave")
    assert "cannot approve your own" in reply
    assert SlackUserLink.objects.get(slack_user_id="UDAVE").user == held.dave
    change.refresh_from_db()
    assert change.state == ChangeState.PENDING


def test_an_unlinked_or_unauthorised_clicker_is_refused(
    held, client, after_ack, fake_slack, django_capture_on_commit_callbacks
):
    change = submit(held, django_capture_on_commit_callbacks)

    post_interaction(client, click(POLICY_APPROVE, change.pk, user="UNOBODY"))
    after_ack.run()
    [reply] = [e["text"] for e in fake_slack.ephemerals if e["user"] == "UNOBODY"]
    assert "cannot tell which Veil account is yours" in reply

    from audit.services import SYSTEM
    from jitaccess.models import SlackLinkMethod
    from jitaccess.slack.services import slack_user_link

    slack_user_link(
        slack_user_id="UEVE", user=held.eve, method=SlackLinkMethod.ADMIN, actor=SYSTEM, channel=Channel.CLI
    )
    post_interaction(client, click(POLICY_APPROVE, change.pk, user="UEVE"))
    after_ack.run()
    [reply] = ephemerals(fake_slack, "eve")
    assert reply.endswith("Nothing changed.")
    change.refresh_from_db()
    assert change.state == ChangeState.PENDING
    refusals = AuditEvent.objects.filter(action="slack.action.refused").order_by("seq")
    assert [(e.actor_name, e.detail["slack_user_id"]) for e in refusals] == [("", "UNOBODY"), ("eve", "UEVE")]
    assert [e.detail["reason"] == "unlinked" for e in refusals] == [True, False]


def test_reject_opens_a_modal_and_stores_the_note(
    held, client, after_ack, fake_slack, django_capture_on_commit_callbacks
):
    change = submit(held, django_capture_on_commit_callbacks)
    [message] = fake_slack.in_channel(APPROVALS)

    response, _, _ = post_interaction(
        client, click(POLICY_REJECT, change.pk, user="UCAROL", message_ts=message.ts)
    )
    assert response.status_code == 200
    [opened] = fake_slack.views
    view = opened["view"]
    assert view["callback_id"] == POLICY_REJECT_MODAL
    after_ack.run()
    assert fake_slack.ephemerals == []

    submission = {
        "type": "view_submission",
        "team": {"id": "T0ACME", "domain": "acme"},
        "user": {"id": "UCAROL", "username": "ucarol", "team_id": "T0ACME"},
        "api_app_id": "A0VEIL",
        "trigger_id": "trigger-x",
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": POLICY_REJECT_MODAL,
            "private_metadata": view["private_metadata"],
            "state": {"values": {"note": {"note": {"type": "plain_text_input", "value": "Too broad"}}}},
        },
    }
    assert json.loads(view["private_metadata"])["request"] == change.pk
    post_interaction(client, submission)
    with django_capture_on_commit_callbacks(execute=True):
        after_ack.run()

    change.refresh_from_db()
    assert (change.state, change.decision_note, change.decided_by) == (
        ChangeState.REJECTED,
        "Too broad",
        held.carol,
    )
    [reply] = ephemerals(fake_slack, "carol")
    assert reply.startswith(":no_entry: You rejected")
    assert not message.has_buttons and "Too broad" in message.shown


def test_the_author_not_linked_yet_sees_the_reject_modal_replaced_by_why(
    held, client, after_ack, fake_slack, django_capture_on_commit_callbacks
):
    change = submit(held, django_capture_on_commit_callbacks)  # Dave's Slack account is not linked yet

    post_interaction(client, click(POLICY_REJECT, change.pk, user="UDAVE"))
    after_ack.run()

    [modal] = fake_slack.views
    assert modal.get("updates") == 1 and "submit" not in modal["view"]
    assert "your own change" in modal["view"]["blocks"][0]["text"]["text"]
    assert ephemerals(fake_slack, "dave") == []
    change.refresh_from_db()
    assert change.state == ChangeState.PENDING
    assert AuditEvent.objects.get(action="slack.action.refused").actor_name == "dave"


def test_the_author_gets_no_reject_modal(
    held, client, after_ack, fake_slack, django_capture_on_commit_callbacks
):
    change = submit(held, django_capture_on_commit_callbacks)
    from audit.services import SYSTEM
    from jitaccess.models import SlackLinkMethod
    from jitaccess.slack.services import slack_user_link

    slack_user_link(
        slack_user_id="UDAVE", user=held.dave, method=SlackLinkMethod.ADMIN, actor=SYSTEM, channel=Channel.CLI
    )

    post_interaction(client, click(POLICY_REJECT, change.pk, user="UDAVE"))
    after_ack.run()

    assert fake_slack.views == []
    [reply] = ephemerals(fake_slack, "dave")
    assert "your own change" in reply
    change.refresh_from_db()
    assert change.state == ChangeState.PENDING
    [refused] = AuditEvent.objects.filter(action="slack.action.refused")
    assert (refused.actor_name, refused.detail["action"]) == ("dave", "reject")


def test_a_web_decision_updates_the_slack_message(held, fake_slack, django_capture_on_commit_callbacks):
    change = submit(held, django_capture_on_commit_callbacks)
    [message] = fake_slack.in_channel(APPROVALS)

    with django_capture_on_commit_callbacks(execute=True):
        policy_change_reject(change_id=change.pk, user=held.carol, note="Not now", channel=Channel.WEB)

    assert not message.has_buttons and message.updates == 1
    assert "Rejected by" in message.shown and "Not now" in message.shown
    assert policy_messages_sweep() == 0, "nothing left to update"
    assert message.updates == 1


def test_the_sweep_updates_a_message_a_lost_task_left_stale(
    held, fake_slack, monkeypatch, django_capture_on_commit_callbacks
):
    change = submit(held, django_capture_on_commit_callbacks)
    [message] = fake_slack.in_channel(APPROVALS)
    monkeypatch.setattr("jitaccess.slack.tasks.enqueue_policy_message", lambda change_id: None)
    with django_capture_on_commit_callbacks(execute=True):
        policy_change_reject(change_id=change.pk, user=held.dave, note="", channel=Channel.WEB)
    assert message.has_buttons

    assert policy_messages_sweep() == 1
    assert not message.has_buttons and "Withdrawn" in message.shown


SALT = "pepper-4b1d-never-in-slack"


def test_a_salt_never_reaches_slack(held, fake_slack, django_capture_on_commit_callbacks):
    """A semantic type's algorithm is described in words in the Slack diff, as on the web: the md5
    salt of a new type, the old and new salts of a changed one and a pseudonym's key never are."""
    SemanticType.objects.create(
        key="hashed", title="Hashed", algorithm={"type": "md5", "salt": "old-" + SALT}
    )
    document = export_document()
    hashed = next(t for t in document["semantic_types"] if t["key"] == "hashed")
    hashed["algorithm"] = {"type": "md5", "salt": "new-" + SALT}
    document["semantic_types"].append(
        {"key": "salted", "title": "Salted", "algorithm": {"type": "md5", "salt": SALT}}
    )
    with django_capture_on_commit_callbacks(execute=True):
        submission = policy_submit(
            document=parse_document(document),
            message="Rotate the salt",
            actor=actor_for(held.dave),
            channel=Channel.WEB,
            author=held.dave,
        )
    assert submission.status == "pending"
    assert SALT in json.dumps(submission.change.changes), "the stored change holds the salts"

    [message] = fake_slack.in_channel(APPROVALS)

    posted = json.dumps(message.blocks) + message.text
    assert SALT not in posted
    assert "algorithm `MD5 with salt (salt changed)` → `MD5 with salt (salt changed)`" in message.shown
    assert "algorithm `∅` → `MD5 with salt`" in message.shown


def test_the_slack_diff_words_algorithms_and_nothing_else_of_them():
    changes = [
        {
            "section": "semantic_types",
            "action": "update",
            "key": "token",
            "fields": [
                {
                    "field": "algorithm",
                    "before": {"type": "pseudonym", "key_id": "key-" + SALT},
                    "after": {"type": "pseudonym", "key_id": "key-2-" + SALT, "prefix": "tok_"},
                },
                {"field": "title", "before": "Token", "after": "Tokens"},
            ],
        }
    ]

    summary = diff_summary(changes)

    assert SALT not in summary
    assert (
        "algorithm `Pseudonym: 16 hex digits (keyed HMAC-SHA256)` → "
        "`Pseudonym: 'tok_' + 16 hex digits (keyed HMAC-SHA256)`" in summary
    )
    assert "title `Token` → `Tokens`" in summary
