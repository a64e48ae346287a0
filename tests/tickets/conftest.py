"""Ticket tests: Veil's real HTTP client against a fake Jira Cloud on loopback, the Slack parts
against the fake Slack (tests/slack), requests made through the page, the API and the modal."""

from __future__ import annotations

import pytest

from jitaccess.models import ProjectAccessSettings
from tests.jitaccess.conftest import World, world  # noqa: F401  (the personas)
from tests.slack.conftest import _no_broker, after_ack, fake_slack, slack  # noqa: F401
from tests.tickets.fake_jira import JIRA_EMAIL, JIRA_TOKEN, FakeJira

OPEN_KEY = "OPS-4711"
OPEN_TITLE = "Refund mismatch between the ledger and the shop"


@pytest.fixture
def fake_jira():
    fake = FakeJira().start()
    fake.issue(OPEN_KEY, OPEN_TITLE, "In Progress", "indeterminate")
    fake.issue("OPS-12", "Old incident, fixed", "Done", "done")
    fake.issue("OPS-13", "Triage the report", "To Do", "new")
    yield fake
    fake.stop()


@pytest.fixture
def jira(settings, fake_jira) -> FakeJira:
    """Jira configured against the fake, with a one-second timeout."""
    settings.JIRA_URL, settings.JIRA_EMAIL, settings.JIRA_API_TOKEN = fake_jira.url, JIRA_EMAIL, JIRA_TOKEN
    settings.JIRA_API_TIMEOUT_S = 1
    return fake_jira


def require_tickets(world: World, *, pattern: str = "", hint: str = "", in_jira: bool = True) -> None:  # noqa: F811
    """The shop project requires a ticket on every request (by default an open Jira issue)."""
    ProjectAccessSettings.objects.update_or_create(
        project=world.project,
        defaults={
            "ticket_required": True,
            "ticket_pattern": pattern,
            "ticket_hint": hint,
            "ticket_in_jira": in_jira,
        },
    )
