"""When the directory deactivates a person, what ended their grant and request is told plainly:
the Slack messages, the emails and the request's page say "Ended: <person> was deactivated in the
directory", not a revocation by nobody (the sync's service account is no person)."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from audit.models import Channel
from identity.models import Scope
from jitaccess.services.grants import grant_end
from jitaccess.services.requests import request_approve
from jitaccess.states import State
from tests.factories import make_token
from tests.slack.conftest import APPROVALS, deliver_outbox

pytestmark = pytest.mark.django_db
ENDED = "Ended: Alice Engineer was deactivated in the directory"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def deactivate(person) -> None:
    """The IdP's SCIM call (Okta's form), through Veil's endpoint."""
    _, token = make_token([Scope.SCIM], account_name="okta-scim")
    body = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    response = Client(HTTP_AUTHORIZATION=f"Bearer {token}").patch(
        f"/scim/v2/Users/{person.scim_id}", data=json.dumps(body), content_type="application/scim+json"
    )
    assert response.status_code == 200, response.content


@pytest.fixture
def alice_from_the_directory(slack, settings):
    settings.NOTIFY_BY_EMAIL = True
    slack.alice.oidc_subject = slack.alice.scim_external_id = "00u-alice"
    slack.alice.save()
    return slack


def test_a_grant_and_a_request_the_directory_ended_say_so_in_slack_email_and_on_the_page(
    alice_from_the_directory, fake_slack, mailoutbox
):
    world = alice_from_the_directory
    granted = world.request("email")
    request_approve(request_id=granted.pk, approver=world.bob, channel=Channel.WEB)
    deliver_outbox()  # the grant's approval message is in the channel, its emails sent
    pending = world.request("phone")  # its message and emails still in the outbox
    mailoutbox.clear()

    deactivate(world.alice)
    deliver_outbox()

    granted.refresh_from_db()
    pending.refresh_from_db()
    assert (granted.state, pending.state) == (State.REVOKED, State.CANCELLED)
    granted_message, pending_message = message_about(fake_slack, granted), message_about(fake_slack, pending)
    assert ":lock: Ended at " in granted_message
    assert "Alice Engineer was deactivated in the directory; values are masked again." in granted_message
    assert ":heavy_multiplication_x: Ended at " in pending_message
    assert "Alice Engineer was deactivated in the directory." in pending_message
    assert not re.search(r"(Revoked|Cancelled) by", granted_message + pending_message)

    # The approvers' emails about the request, sent after the directory ended it, say so too.
    about_pending = [m for m in mailoutbox if pending.ref in m.body]
    assert {tuple(m.to) for m in about_pending} == {(world.bob.email,), (world.carol.email,)}
    assert all(f"{ENDED}." in m.body for m in about_pending), about_pending[0].body

    # And the request's page: its timeline names the deactivation, not a revocation.
    page = Client()
    page.force_login(world.dave)
    for request in (granted, pending):
        html = page.get(f"/requests/{request.pk}/").content.decode()
        assert ENDED in html, request.ref
        assert "<strong>Revoked</strong>" not in html and "<strong>Cancelled</strong>" not in html


def test_a_revocation_by_a_person_still_names_them(slack, fake_slack):
    granted = slack.request("email")
    request_approve(request_id=granted.pk, approver=slack.bob, channel=Channel.WEB)
    deliver_outbox()

    grant_end(request_id=granted.pk, user=slack.bob, action="revoke", channel=Channel.WEB, reason="done")
    deliver_outbox()

    assert "Revoked by Bob at " in message_about(fake_slack, granted)
    assert "deactivated" not in message_about(fake_slack, granted)


def message_about(fake_slack, request) -> str:
    """What the approval channel shows of the request's one message, as it reads now."""
    (message,) = [m for m in fake_slack.in_channel(APPROVALS) if re.search(rf"\b{request.ref}\b", m.shown)]
    return message.shown
