"""A decision clicked in Slack is committed before Slack gets its 200: a node that dies after the
answer, before its lazy listener applied the click, loses nothing; the sweep applies it.

Here the node's death is the lazy listener's work thrown away after the acknowledgement (the
process cannot be killed in-process); tests/ops/test_slack_click_kill.py SIGKILLs a real gunicorn
node instead. The sweep is the beat task, run as a worker runs it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from jitaccess.models import Approval
from jitaccess.reviews.models import ItemState
from jitaccess.reviews.slack_messages import REVIEW_REMOVE
from jitaccess.slack.clicks import MAX_ATTEMPTS, RETRY_AFTER_S
from jitaccess.slack.models import SlackClick, SlackClickKind
from jitaccess.slack.policy_messages import POLICY_APPROVE
from jitaccess.slack.tasks import apply_slack_clicks
from jitaccess.states import State
from masking.models import ChangeState
from tests.slack.conftest import APPROVALS, SLACK_IDS, click, deny_submission, post_interaction, replay
from tests.slack.test_access_reviews import answer_click, open_campaign, reviewed  # noqa: F401
from tests.slack.test_policy_changes import held, submit  # noqa: F401

pytestmark = pytest.mark.django_db


def ephemerals(fake_slack, username: str) -> list[str]:
    return [e["text"] for e in fake_slack.ephemerals if e["user"] == SLACK_IDS[username]]


def node_dies_after_the_ack(after_ack) -> list:
    """What the node would have done after answering Slack, thrown away (kept to run it late)."""
    lost, after_ack.pending[:] = list(after_ack.pending), []
    return lost


def sweep_later(time_machine) -> int:
    """The beat's sweep, once the acknowledging node has had its chance."""
    time_machine.move_to(timezone.now() + timedelta(seconds=RETRY_AFTER_S + 1))
    return apply_slack_clicks()


def test_an_approval_acknowledged_by_a_node_that_died_is_applied_by_the_sweep(
    slack, client, after_ack, fake_slack, time_machine
):
    request = slack.request("email")

    response, _, _ = post_interaction(client, click("approve", request.pk, user="UBOB"))
    lost = node_dies_after_the_ack(after_ack)

    assert response.status_code == 200
    [recorded] = SlackClick.objects.all()
    assert (recorded.kind, recorded.target_id, recorded.slack_user_id, recorded.processed_at) == (
        SlackClickKind.APPROVE,
        request.pk,
        "UBOB",
        None,
    )
    request.refresh_from_db()
    assert request.state == State.PENDING, "nothing is decided before Slack has its answer"

    assert sweep_later(time_machine) == 1

    request.refresh_from_db()
    assert request.state == State.APPROVED
    assert Approval.objects.get(request=request).approver == slack.bob
    [reply] = ephemerals(fake_slack, "bob")
    assert reply.startswith(f":white_check_mark: You approved {request.ref}: access until")
    # Had the node's listener run after all, late, it finds the click applied.
    after_ack.pending.extend(lost)
    after_ack.run()
    assert len(ephemerals(fake_slack, "bob")) == 1
    assert AuditEvent.objects.filter(action="request.approved").count() == 1
    assert apply_slack_clicks() == 0


def test_a_denial_submitted_to_a_node_that_died_is_applied_with_its_reason(
    slack, client, after_ack, fake_slack, time_machine
):
    request = slack.request("email")

    response, _, _ = post_interaction(
        client, deny_submission(request.pk, "use the staging copy", user="UBOB")
    )
    node_dies_after_the_ack(after_ack)

    assert (response.status_code, response.content) == (200, b""), "the modal closes"
    assert sweep_later(time_machine) == 1
    request.refresh_from_db()
    assert (request.state, request.deny_reason) == (State.DENIED, "use the staging copy")
    assert ephemerals(fake_slack, "bob") == [
        f":no_entry: You denied {request.ref}. Alice Engineer is told why."
    ]


def test_a_policy_change_approved_on_a_node_that_died_is_applied(
    held,  # noqa: F811
    client,
    after_ack,
    fake_slack,
    time_machine,
    django_capture_on_commit_callbacks,
):
    change = submit(held, django_capture_on_commit_callbacks)
    [message] = fake_slack.in_channel(APPROVALS)

    post_interaction(client, click(POLICY_APPROVE, change.pk, user="UCAROL", message_ts=message.ts))
    node_dies_after_the_ack(after_ack)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_later(time_machine) == 1

    change.refresh_from_db()
    assert (change.state, change.decided_by) == (ChangeState.APPLIED, held.carol)
    [reply] = ephemerals(fake_slack, "carol")
    assert reply.startswith(f":white_check_mark: You approved change #{change.pk}")


def test_an_access_review_answer_given_to_a_node_that_died_is_applied(
    reviewed,  # noqa: F811
    client,
    after_ack,
    fake_slack,
    time_machine,
    django_capture_on_commit_callbacks,
):
    campaign = open_campaign(reviewed, django_capture_on_commit_callbacks)
    alice = reviewed.item(campaign, "Alice")

    post_interaction(client, answer_click(REVIEW_REMOVE, alice.pk, user="bob"))
    node_dies_after_the_ack(after_ack)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_later(time_machine) == 1

    alice.refresh_from_db()
    assert alice.state == ItemState.REMOVED
    [reply] = ephemerals(fake_slack, "bob")
    assert reply.startswith(":wastebasket: Removed: Alice Engineer")


@pytest.mark.django_db(transaction=True)  # autocommit, as in production: the INSERT fails alone
def test_a_click_the_database_cannot_record_is_not_acknowledged_and_slack_may_retry(
    slack, client, after_ack, fake_slack
):
    request = slack.request("email")
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_click() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$"
            " LANGUAGE plpgsql; CREATE TRIGGER refuse_click BEFORE INSERT ON jitaccess_slackclick"
            " FOR EACH ROW EXECUTE FUNCTION refuse_click();"
        )
    try:
        response, body, headers = post_interaction(client, click("approve", request.pk, user="UBOB"))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER refuse_click ON jitaccess_slackclick; DROP FUNCTION refuse_click();")

    assert response.status_code == 500, "Slack shows the clicker an error: nothing was acknowledged"
    assert not SlackClick.objects.exists()
    retry = replay(client, body, {**headers, "X-Slack-Retry-Num": "1"})  # not filtered as seen
    assert retry.status_code == 200
    after_ack.run()  # the failed request's listener, then the retry's: one click, applied once
    request.refresh_from_db()
    assert request.state == State.APPROVED
    assert len(ephemerals(fake_slack, "bob")) == 1


def test_a_click_whose_decision_keeps_failing_is_given_up_and_its_clicker_told(
    slack, client, after_ack, fake_slack, time_machine
):
    request = slack.request("email")
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$"
            " LANGUAGE plpgsql; CREATE TRIGGER refuse BEFORE INSERT ON jitaccess_approval"
            " FOR EACH ROW EXECUTE FUNCTION refuse();"
        )

    post_interaction(client, click("approve", request.pk, user="UBOB"))
    after_ack.run()  # the first attempt fails: the click waits
    [recorded] = SlackClick.objects.all()
    assert (recorded.attempts, recorded.processed_at, fake_slack.ephemerals) == (1, None, [])
    for _ in range(MAX_ATTEMPTS - 1):
        sweep_later(time_machine)

    recorded.refresh_from_db()
    assert recorded.attempts == MAX_ATTEMPTS and recorded.processed_at is not None
    request.refresh_from_db()
    assert request.state == State.PENDING and not Approval.objects.filter(request=request).exists()
    assert ephemerals(fake_slack, "bob") == [
        "Veil could not act on this click. Nothing changed: decide in Veil."
    ]
    assert not AuditEvent.objects.filter(action="request.approved").exists()
