"""Tickets end to end, through each way a request is made: the web form, the Slack `/veil` modal
and the API, with Veil's real HTTP client asking the fake Jira Cloud and the real slack-sdk
posting to the fake Slack. Approvers see the Jira title next to the reason, in Slack and on the
web; a ticket Jira does not vouch for is refused in the ticket's own field, never with a 500."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from audit.models import AuditEvent
from jitaccess.models import AccessRequest
from jitaccess.states import State
from masking.models import Column
from tests.slack.conftest import APPROVALS, click, deliver_outbox, post_interaction, replay
from tests.slack.test_requesting import link, payload_body, signed_post, submission, valid
from tests.tickets.conftest import OPEN_KEY, OPEN_TITLE, require_tickets

pytestmark = pytest.mark.django_db
NEW = "/requests/new/"
HINT = "an OPS issue key, such as OPS-123"


def email_column() -> Column:
    return Column.objects.get(name="email", table__schema__database__instance__key="prod-pg")


def web_form(**overrides) -> dict:
    return {
        "scope": [f"column:{email_column().pk}"],
        "duration": "4",
        "reason": "Customer says the refund <@U0BOSS> never arrived",
        **overrides,
    }


def as_person(client: Client, person) -> Client:
    client.force_login(person)
    return client


def ticket_section(message) -> str:
    """The text of the Slack message's section that follows the reason."""
    texts = [b["text"]["text"] for b in message.blocks if b["type"] == "section" and "text" in b]
    reason = next(i for i, text in enumerate(texts) if text.startswith("*Reason*"))
    return texts[reason + 1]


# --- the web form, then Slack -------------------------------------------------------------------


def test_a_web_request_with_a_jira_ticket_shows_its_title_to_approvers_then_is_approved_in_slack(
    slack, jira, client, after_ack, fake_slack
):
    require_tickets(slack, pattern="OPS-[0-9]+", hint=HINT)

    response = as_person(client, slack.alice).post(NEW, web_form(ticket=OPEN_KEY), follow=True)

    request = AccessRequest.objects.get()
    assert response.redirect_chain[-1][0] == f"/requests/{request.pk}/"
    assert (request.ticket, request.ticket_title, request.ticket_status) == (
        OPEN_KEY,
        OPEN_TITLE,
        "In Progress",
    )
    deliver_outbox()
    [message] = fake_slack.in_channel(APPROVALS)
    assert ticket_section(message) == (
        f"*Ticket*\n<{jira.url}/browse/{OPEN_KEY}|{OPEN_KEY}> · {OPEN_TITLE} "
        "(In Progress in Jira when requested)"
    )
    assert ">Customer says the refund &lt;@U0BOSS&gt; never arrived" in message.shown, "the reason, escaped"

    queue = as_person(client, slack.bob).get("/approvals/").content.decode()
    assert f'<a href="{jira.url}/browse/{OPEN_KEY}" rel="noopener noreferrer">{OPEN_KEY}</a>' in queue
    assert f'<span class="ticket-title">{OPEN_TITLE}</span>' in queue
    assert queue.index("Customer says the refund") < queue.index(OPEN_TITLE), "under the reason"

    post_interaction(client, click("approve", request.pk, user="UBOB"))
    after_ack.run()
    request.refresh_from_db()
    assert request.state == State.APPROVED
    assert len(jira.calls) == 1, "Jira was asked once, when the request was made"


@pytest.mark.parametrize(
    ("ticket", "message"),
    [
        ("", f"Name the ticket this request is for ({HINT})."),
        ("SEC-1", f"&#x27;SEC-1&#x27; is not a ticket of project shop ({HINT})."),
        ("OPS-999", "OPS-999 is not an issue in Jira (or Veil may not see it): check the key."),
        ("OPS-12", "OPS-12 is closed in Jira (Done): name an open issue."),
    ],
)
def test_a_bad_ticket_on_the_web_form_is_shown_next_to_the_ticket_field(slack, jira, client, ticket, message):
    require_tickets(slack, pattern="OPS-[0-9]+", hint=HINT)

    page = as_person(client, slack.alice).post(NEW, web_form(ticket=ticket))

    body = page.content.decode()
    error = body[body.index('id="id_ticket_error"') :]
    assert message in error[: error.index("</div>")]
    assert (
        'aria-invalid="true"' in body[body.index('name="ticket"') - 200 : body.index('name="ticket"') + 200]
    )
    assert not AccessRequest.objects.exists()


def test_jira_down_refuses_the_web_request_in_the_ticket_field_not_with_a_500(slack, jira, client):
    require_tickets(slack)
    jira.fail("status", 503)

    page = as_person(client, slack.alice).post(NEW, web_form(ticket=OPEN_KEY))

    assert page.status_code == 200
    assert f"Veil could not check {OPEN_KEY} in Jira (HTTP 503)" in page.content.decode()
    assert not AccessRequest.objects.exists()


def test_the_request_form_says_what_a_ticket_looks_like_in_the_project(slack, jira, client):
    require_tickets(slack, hint=HINT)

    page = as_person(client, slack.alice).get(NEW).content.decode()

    assert f"Required: {HINT}. Veil checks in Jira that it is open." in page
    assert 'name="ticket"' in page and "required" in page[page.index('name="ticket"') :][:200]


# --- the Slack modal -----------------------------------------------------------------------------


def test_the_modal_files_a_request_with_a_jira_ticket_and_its_title_is_posted(
    slack, jira, client, fake_slack, after_ack
):
    require_tickets(slack)
    link(slack.alice, "UALICE")

    response, _ = signed_post(
        client, "/slack/interactions", payload_body(submission(**valid(slack, ticket="ops-4711")))
    )

    assert json.loads(response.content)["response_action"] == "update"
    request = AccessRequest.objects.get()
    assert (request.ticket, request.ticket_title) == (OPEN_KEY, OPEN_TITLE)
    deliver_outbox()
    [message] = fake_slack.in_channel(APPROVALS)
    assert OPEN_TITLE in ticket_section(message)
    after_ack.run()
    assert [m.channel for m in fake_slack.posts() if m.channel == "DALICE"] == ["DALICE"], "the link in a DM"


@pytest.mark.parametrize(
    ("ticket", "fault", "message"),
    [
        ("OPS-999", None, "OPS-999 is not an issue in Jira (or Veil may not see it): check the key."),
        ("OPS-12", None, "OPS-12 is closed in Jira (Done): name an open issue."),
        ("", None, "Name the ticket this request is for (a Jira issue key such as OPS-123, or its link)."),
        ("https://tickets.example/INC-1", None, "Project shop needs a Jira issue"),
        (OPEN_KEY, ("status", 500), f"Veil could not check {OPEN_KEY} in Jira (HTTP 500)"),
        (OPEN_KEY, ("hang", 5), f"Veil could not check {OPEN_KEY} in Jira (no answer within 1 s)"),
    ],
)
def test_a_bad_ticket_in_the_modal_is_answered_in_the_ticket_field(
    slack, jira, client, after_ack, ticket, fault, message
):
    require_tickets(slack)
    link(slack.alice, "UALICE")
    if fault:
        jira.fail(*fault)

    response, _ = signed_post(
        client, "/slack/interactions", payload_body(submission(**valid(slack, ticket=ticket)))
    )

    answer = json.loads(response.content)
    assert answer["response_action"] == "errors"
    assert list(answer["errors"]) == ["ticket"]
    assert answer["errors"]["ticket"].startswith(message)
    assert not AccessRequest.objects.exists()


def test_a_replayed_modal_submission_files_one_request_and_asks_jira_once(slack, jira, client, after_ack):
    require_tickets(slack)
    link(slack.alice, "UALICE")
    body = payload_body(submission(**valid(slack, ticket=OPEN_KEY)))
    first, headers = signed_post(client, "/slack/interactions", body)

    again = replay(client, body, headers)

    assert json.loads(first.content)["response_action"] == "update"
    assert (again.status_code, again.content) == (200, b"")
    assert AccessRequest.objects.count() == 1
    assert len(jira.calls) == 1


def test_the_modal_says_under_its_ticket_field_what_the_project_accepts(
    slack, jira, client, fake_slack, after_ack
):
    require_tickets(slack, hint=HINT)
    link(slack.alice, "UALICE")

    signed_post(
        client,
        "/slack/interactions",
        payload_body(
            {
                "type": "shortcut",
                "team": {"id": "T0ACME", "domain": "acme"},
                "user": {"id": "UALICE", "username": "ualice", "team_id": "T0ACME"},
                "callback_id": "request_unmask",
                "trigger_id": "trigger-1",
                "action_ts": "1.0",
                "token": "legacy",
            }
        ),
    )

    [opened] = fake_slack.views
    ticket = next(b for b in opened["view"]["blocks"] if b.get("block_id") == "ticket")
    assert ticket["element"]["type"] == "plain_text_input", "a key is not a URL: Slack would refuse it"
    assert ticket["hint"]["text"] == f"Required: {HINT}. Veil checks in Jira that it is open."


# --- the API -------------------------------------------------------------------------------------


def api_body(**overrides) -> dict:
    return {
        "instance": "prod-pg",
        "database": "shop",
        "schema": "public",
        "table": "customers",
        "columns": ["email"],
        "duration_minutes": 120,
        "reason": "refund mismatch",
        **overrides,
    }


def test_the_api_files_a_request_with_a_jira_ticket_and_returns_its_title(slack, jira, api_client):
    require_tickets(slack)
    api_client.force_login(slack.alice)

    created = api_client.post("/api/v1/requests", api_body(ticket=OPEN_KEY), format="json")

    assert created.status_code == 201, created.content
    assert {k: created.json()[k] for k in ("ticket", "ticket_url", "ticket_title", "ticket_status")} == {
        "ticket": OPEN_KEY,
        "ticket_url": f"{jira.url}/browse/{OPEN_KEY}",
        "ticket_title": OPEN_TITLE,
        "ticket_status": "In Progress",
    }


@pytest.mark.parametrize(
    ("body", "fault", "message"),
    [
        ({"ticket": "OPS-999"}, None, "OPS-999 is not an issue in Jira"),
        ({}, None, "is required in project shop"),
        ({"ticket": OPEN_KEY}, ("status", 502), f"Veil could not check {OPEN_KEY} in Jira (HTTP 502)"),
        (
            {"ticket": OPEN_KEY},
            ("not_json", None),
            f"Veil could not check {OPEN_KEY} in Jira (the answer is not JSON)",
        ),
        ({"ticket": OPEN_KEY, "ticket_url": "https://x.example/1"}, None, "give the ticket once"),
    ],
)
def test_a_bad_ticket_through_the_api_is_a_400_naming_the_field(
    slack, jira, api_client, body, fault, message
):
    require_tickets(slack)
    api_client.force_login(slack.alice)
    if fault:
        jira.fail(*fault)

    response = api_client.post("/api/v1/requests", api_body(**body), format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert list(error["fields"]) == ["ticket"]
    assert error["fields"]["ticket"][0].startswith(message)
    assert not AccessRequest.objects.exists()
    assert not AuditEvent.objects.filter(action="request.created").exists()


def test_the_api_still_takes_a_link_as_ticket_url(world, api_client):
    api_client.force_login(world.alice)

    created = api_client.post(
        "/api/v1/requests", api_body(ticket_url="https://tickets.example/INC-4711"), format="json"
    )

    assert created.status_code == 201, created.content
    assert created.json()["ticket"] == created.json()["ticket_url"] == "https://tickets.example/INC-4711"


# --- shown verbatim and safely -------------------------------------------------------------------

HOSTILE_TITLE = "<!channel> see <https://evil.example/login|the fix> & <script>alert(1)</script>"


def test_a_hostile_jira_title_and_ticket_are_shown_verbatim_without_mentions_links_or_markup(
    slack, jira, client, fake_slack
):
    jira.issue("OPS-66", HOSTILE_TITLE, "<@U0BOSS> Waiting", "indeterminate")
    require_tickets(slack, hint=HINT)
    as_person(client, slack.alice).post(NEW, web_form(ticket="OPS-66"))
    require_tickets(slack, pattern=".+", in_jira=False)  # any text is a ticket
    free_text = slack.request("phone", ticket="<!here> <https://evil.example|INC-1>")
    request = AccessRequest.objects.get(ticket="OPS-66")

    deliver_outbox()

    slack_texts = {ticket_section(m) for m in fake_slack.in_channel(APPROVALS)}
    assert slack_texts == {
        f"*Ticket*\n<{jira.url}/browse/OPS-66|OPS-66> · &lt;!channel&gt; see "
        "&lt;https://evil.example/login|the fix&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt; "
        "(&lt;@U0BOSS&gt; Waiting in Jira when requested)",
        "*Ticket*\n&lt;!here&gt; &lt;https://evil.example|INC-1&gt;",
    }
    page = as_person(client, slack.bob).get(f"/requests/{request.pk}/").content.decode()
    assert "&lt;!channel&gt; see &lt;https://evil.example/login|the fix&gt; &amp; &lt;script&gt;" in page
    assert "<script>alert(1)" not in page and 'href="https://evil.example' not in page
    other = as_person(client, slack.bob).get(f"/requests/{free_text.pk}/").content.decode()
    assert "&lt;!here&gt; &lt;https://evil.example|INC-1&gt;" in other
