"""A project's ticket rules, as `request_create` enforces them for every channel: required, a
pattern with its hint, and an open Jira issue read once, at creation, whose title and status are
kept on the request. Every refusal is a `RequestError` on `ticket` and writes nothing."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent, Channel
from jitaccess.errors import RequestError
from jitaccess.models import AccessRequest, Notification
from jitaccess.services.requests import request_approve
from tests.tickets.conftest import OPEN_KEY, OPEN_TITLE, require_tickets

pytestmark = pytest.mark.django_db


def refused(world, ticket: str, **kwargs) -> str:
    with pytest.raises(RequestError) as raised:
        world.request(ticket=ticket, **kwargs)
    assert raised.value.field == "ticket"
    assert not AccessRequest.objects.exists(), "nothing written"
    assert not AuditEvent.objects.filter(action="request.created").exists()
    assert not Notification.objects.exists()
    return raised.value.message


# --- without rules -------------------------------------------------------------------------------


def test_without_rules_a_ticket_is_optional_and_may_be_a_link_or_a_key(world, fake_jira):
    none = world.request()
    link = world.request("phone", ticket="https://tickets.example/INC-4711?a=1&b=2")
    key = world.request("email", "phone", ticket="inc-4711")

    assert (none.ticket, none.ticket_url) == ("", "")
    assert (link.ticket, link.ticket_url) == ("https://tickets.example/INC-4711?a=1&b=2",) * 2
    assert (key.ticket, key.ticket_url, key.ticket_title) == ("INC-4711", "", ""), "no Jira: no link to guess"
    assert fake_jira.calls == []


@pytest.mark.parametrize("ticket", ["not a ticket", "javascript:alert(1)", "<!channel>", "ftp://files/x"])
def test_without_a_pattern_a_ticket_is_a_link_or_an_issue_key(world, ticket):
    message = refused(world, ticket)

    assert message == f"{ticket!r} is neither a link (https://…) nor an issue key such as OPS-123"


def test_a_ticket_longer_than_the_field_is_refused(world):
    assert refused(world, "https://tickets.example/" + "x" * 200) == "is longer than 200 characters"


def test_with_jira_configured_a_key_links_to_its_issue_without_asking_jira(world, jira):
    request = world.request(ticket=OPEN_KEY)

    assert request.ticket_url == f"{jira.url}/browse/{OPEN_KEY}"
    assert (request.ticket_title, request.ticket_status) == ("", "")
    assert jira.calls == [], "the project does not ask for Jira's word"


# --- required, pattern and hint ------------------------------------------------------------------


def test_a_missing_ticket_is_refused_where_one_is_required_saying_what_one_looks_like(world):
    require_tickets(world, in_jira=False, hint="an OPS issue key, such as OPS-123")

    assert refused(world, "   ") == "is required in project shop (an OPS issue key, such as OPS-123)"


def test_a_ticket_not_matching_the_pattern_is_refused_with_the_hint(world):
    require_tickets(world, pattern="OPS-[0-9]+", hint="an OPS issue key, such as OPS-123", in_jira=False)

    assert (
        refused(world, "SEC-1")
        == "'SEC-1' is not a ticket of project shop (an OPS issue key, such as OPS-123)"
    )
    assert refused(world, "xOPS-1"), "the whole ticket must match, not a part of it"
    assert world.request(ticket="OPS-77").ticket == "OPS-77"


def test_a_pattern_may_accept_what_is_neither_a_link_nor_a_key(world):
    require_tickets(world, pattern=r"INC[0-9]{7}", hint="a ServiceNow incident number", in_jira=False)

    request = world.request(ticket="INC0012345")

    assert (request.ticket, request.ticket_url) == ("INC0012345", "")


def test_without_a_hint_the_refusal_says_what_veil_accepts(world):
    require_tickets(world, in_jira=False)

    assert (
        refused(world, "")
        == "is required in project shop (a link to the ticket, or its issue key such as OPS-123)"
    )


def test_a_pattern_that_would_backtrack_forever_is_matched_in_linear_time(world):
    """Python's re takes longer than the age of the universe on this one; RE2 semantics do not."""
    require_tickets(world, pattern="(a+)+b", in_jira=False)

    assert refused(world, "a" * 150 + "!").startswith("'aaaa")


# --- Jira ----------------------------------------------------------------------------------------


def test_an_open_jira_issue_is_accepted_and_its_title_kept_for_approvers(world, jira):
    require_tickets(world)

    request = world.request(ticket=OPEN_KEY)

    assert (request.ticket, request.ticket_title, request.ticket_status) == (
        OPEN_KEY,
        OPEN_TITLE,
        "In Progress",
    )
    assert request.ticket_url == f"{jira.url}/browse/{OPEN_KEY}"
    created = AuditEvent.objects.get(action="request.created")
    assert created.detail["ticket"] == OPEN_KEY
    assert (created.detail["ticket_title"], created.detail["ticket_status"]) == (OPEN_TITLE, "In Progress")
    assert len(jira.calls) == 1


def test_a_link_to_the_issue_on_the_jira_site_is_checked_as_its_key(world, jira):
    require_tickets(world)

    request = world.request(ticket=f"{jira.url}/browse/{OPEN_KEY}")

    assert (request.ticket_title, jira.calls[0].path) == (OPEN_TITLE, f"/rest/api/3/issue/{OPEN_KEY}")


def test_a_to_do_issue_is_open(world, jira):
    require_tickets(world)

    assert world.request(ticket="OPS-13").ticket_status == "To Do"


def test_a_jira_key_that_does_not_exist_is_refused(world, jira):
    require_tickets(world)

    assert (
        refused(world, "OPS-999") == "OPS-999 is not an issue in Jira (or Veil may not see it): check the key"
    )


def test_a_closed_issue_is_refused(world, jira):
    require_tickets(world)

    assert refused(world, "OPS-12") == "OPS-12 is closed in Jira (Done): name an open issue"


@pytest.mark.parametrize(
    ("kind", "value", "why"),
    [
        ("status", 500, "HTTP 500"),
        ("hang", 5, "no answer within 1 s"),
        ("not_json", None, "the answer is not JSON"),
    ],
)
def test_jira_failing_to_answer_refuses_the_ticket_never_takes_it_as_open(world, jira, kind, value, why):
    require_tickets(world)
    jira.fail(kind, value)

    message = refused(world, OPEN_KEY)

    assert message == (
        f"Veil could not check {OPEN_KEY} in Jira ({why}), and a ticket it cannot check is not taken as "
        "open: try again in a moment"
    )


def test_a_ticket_that_names_no_jira_issue_is_refused_where_jira_decides(world, jira):
    require_tickets(world)

    assert refused(world, "https://tickets.example/INC-4711") == (
        "project shop needs a Jira issue (a Jira issue key such as OPS-123, or its link)"
    )
    assert jira.calls == []


def test_without_a_jira_connection_a_project_that_checks_in_jira_refuses_tickets(world, settings):
    require_tickets(world)
    settings.JIRA_URL = settings.JIRA_EMAIL = settings.JIRA_API_TOKEN = ""

    assert refused(world, OPEN_KEY).startswith(
        "project shop needs an open Jira issue, but Veil has no Jira connection"
    )


def test_jira_is_asked_last_so_a_request_refused_for_its_scope_costs_no_call(world, jira):
    require_tickets(world)

    with pytest.raises(RequestError) as raised:
        world.request("no_such_column", ticket=OPEN_KEY)

    assert raised.value.field == "columns"
    assert jira.calls == []


def test_jira_is_not_asked_inside_the_transaction(world, jira):
    """The issue is read before the request's transaction opens: no row lock waits on Jira."""
    require_tickets(world)
    asked_in_transaction = []
    original = jira._answer

    def answer(*args):
        asked_in_transaction.append(connection.in_atomic_block)
        return original(*args)

    jira._answer = answer
    world.request(ticket=OPEN_KEY)

    assert asked_in_transaction == [False]


def test_the_title_is_what_jira_said_at_creation_and_no_later_view_asks_again(world, jira, client):
    require_tickets(world)
    request = world.request(ticket=OPEN_KEY)
    jira.issue(OPEN_KEY, "Renamed later", "Done", "done")

    client.force_login(world.bob)
    page = client.get(f"/requests/{request.pk}/").content.decode()
    request_approve(request_id=request.pk, approver=world.bob, channel=Channel.WEB)

    assert OPEN_TITLE in page and "Renamed later" not in page
    assert len(jira.calls) == 1, "checked once, when the request was made"
    assert AccessRequest.objects.get(pk=request.pk).ticket_title == OPEN_TITLE


def test_checking_a_ticket_costs_no_query_per_rule(world, jira):
    """The project's settings are read once for the format and the Jira check."""
    require_tickets(world)
    with CaptureQueriesContext(connection) as queries:
        world.request(ticket=OPEN_KEY)

    reads = [q["sql"] for q in queries.captured_queries if "jitaccess_projectaccesssettings" in q["sql"]]
    assert len(reads) == 1
