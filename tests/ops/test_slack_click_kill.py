"""A Slack approval acknowledged by a gunicorn node that is SIGKILLed right after Slack's 200 is
still applied: the acknowledgement committed the click, the sweep applies it.

One real node (gunicorn, two workers, `tests.ops.nodes`) against the test's database and the fake
Slack. The test holds the request's row lock while it clicks, so the node's lazy listener cannot
decide before the kill (it waits on that lock inside its transaction, which dies with it); then it
lets go and runs the beat's sweep, as a worker would, until the approval is applied."""

from __future__ import annotations

import json
import signal
import time

import pytest
from django.db import transaction

from audit.models import AuditEvent, Channel
from jitaccess.models import AccessRequest, Approval
from jitaccess.slack.blocks import APPROVE
from jitaccess.slack.models import SlackClick, SlackClickKind
from jitaccess.slack.tasks import apply_slack_clicks
from jitaccess.states import State
from tests.jitaccess.conftest import world  # noqa: F401 - the personas
from tests.ops.nodes import form, gunicorn_server, node_env, post, wait_until
from tests.slack.conftest import (  # noqa: F401 - fixtures
    SIGNING_SECRET,
    _no_broker,
    click,
    fake_slack,
    sign,
    slack,
)
from tests.slack.fake_slack import TOKEN

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def node(slack, fake_slack, settings, tmp_path):  # noqa: F811
    db = settings.DATABASES["default"]
    env = node_env(
        database_url=f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        redis_url="",  # the cache is each worker's own, the broker a directory: this test needs neither
        var_dir=tmp_path,
        SITE_URL=settings.SITE_URL,
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_TEAM_ID=settings.SLACK_TEAM_ID,
        SLACK_APP_ID=settings.SLACK_APP_ID,
        SLACK_API_URL=fake_slack.url,
        SLACK_APPROVAL_CHANNEL=settings.SLACK_APPROVAL_CHANNEL,
        SLACK_API_TIMEOUT_S="2",
        STATIC_ROOT=str(tmp_path / "static"),
    )
    (tmp_path / "static").mkdir()
    server = gunicorn_server("web", env, tmp_path)
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.kill()
        print(server.log_tail())  # shown when the test fails


def signed_approve(request_pk: int, slack_user: str) -> tuple[bytes, dict[str, str]]:
    body = form(json.dumps(click(APPROVE, request_pk, user=slack_user)))
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": sign(body.decode(), timestamp),
    }
    return body, headers


def test_an_approval_acknowledged_by_a_node_killed_right_after_is_applied_by_the_sweep(
    slack,  # noqa: F811
    fake_slack,  # noqa: F811
    node,
):
    request = slack.request("email")

    with transaction.atomic():
        AccessRequest.objects.select_for_update().get(pk=request.pk)  # the decision must wait
        answer = post(f"{node.url}/slack/interactions", *signed_approve(request.pk, "UBOB"))
        node.kill(signal.SIGKILL)
        assert answer.status == 200, answer
        [recorded] = SlackClick.objects.all()
        assert (recorded.kind, recorded.target_id, recorded.processed_at) == (
            SlackClickKind.APPROVE,
            request.pk,
            None,
        )
    assert AccessRequest.objects.get(pk=request.pk).state == State.PENDING, "the node decided nothing"

    wait_until(
        lambda: apply_slack_clicks() and AccessRequest.objects.get(pk=request.pk).state == State.APPROVED,
        timeout=60,
        every=0.5,
        what="the sweep to apply the acknowledged click",
    )

    approval = Approval.objects.get(request=request)
    assert (approval.approver, approval.channel) == (slack.bob, Channel.SLACK)
    assert AuditEvent.objects.filter(action="request.approved").count() == 1
    assert SlackClick.objects.get().processed_at is not None
    [reply] = [e["text"] for e in fake_slack.ephemerals if e["user"] == "UBOB"]
    assert reply.startswith(f":white_check_mark: You approved {request.ref}: access until")
