"""Veil's Jira client (`jitaccess.jira`) against the fake Jira Cloud: what it asks, what it makes of
each answer, and that anything it cannot trust is `JiraUnavailable`, never an open issue."""

from __future__ import annotations

import base64

import pytest

from jitaccess.jira import JiraIssue, JiraUnavailable, issue_link, jira_issue, key_in_link
from tests.tickets.conftest import OPEN_KEY, OPEN_TITLE
from tests.tickets.fake_jira import JIRA_EMAIL, JIRA_TOKEN


def test_an_open_issue_is_read_with_its_title_and_status(jira):
    issue = jira_issue(OPEN_KEY)

    assert issue == JiraIssue(OPEN_KEY, OPEN_TITLE, "In Progress", done=False)
    [call] = jira.calls
    assert call.path == f"/rest/api/3/issue/{OPEN_KEY}"
    assert call.query == {"fields": ["summary,status"]}
    credentials = base64.b64encode(f"{JIRA_EMAIL}:{JIRA_TOKEN}".encode()).decode()
    assert call.headers["authorization"] == f"Basic {credentials}"
    assert call.headers["accept"] == "application/json"


def test_an_issue_in_the_done_category_is_closed_whatever_its_status_is_called(jira):
    jira.issue("OPS-20", "Shipped", "Released", "done")

    assert jira_issue("OPS-12").done
    assert jira_issue("OPS-20") == JiraIssue("OPS-20", "Shipped", "Released", done=True)
    assert not jira_issue("OPS-13").done, "To Do is open"


def test_a_key_jira_does_not_know_is_none(jira):
    assert jira_issue("OPS-999") is None
    assert jira.calls[0].status == 404


def test_a_moved_issue_answers_under_its_new_key(jira):
    jira.move(OPEN_KEY, "SEC-7")

    assert jira_issue(OPEN_KEY) == JiraIssue("SEC-7", OPEN_TITLE, "In Progress", done=False)


@pytest.mark.parametrize(
    ("kind", "value", "why"),
    [
        ("status", 500, "HTTP 500"),
        ("status", 503, "HTTP 503"),
        ("status", 429, "HTTP 429"),
        ("not_json", None, "the answer is not JSON"),
        ("wrong_shape", None, "the answer has no 'fields.status.statusCategory'"),
        ("redirect", None, "HTTP 302"),
        ("hang", 5, "no answer within 1 s"),
    ],
)
def test_an_answer_veil_cannot_trust_is_unavailable(jira, kind, value, why):
    jira.fail(kind, value)

    with pytest.raises(JiraUnavailable) as raised:
        jira_issue(OPEN_KEY)

    assert str(raised.value) == why
    assert len(jira.calls) == 1, "no retry, and no redirect followed"


def test_credentials_jira_refuses_are_unavailable_not_a_missing_issue(jira, settings):
    settings.JIRA_API_TOKEN = "revoked-token"

    with pytest.raises(JiraUnavailable, match="HTTP 401: Jira refused Veil's credentials"):
        jira_issue(OPEN_KEY)


def test_jira_not_listening_is_unavailable(jira, settings):
    jira.stop()

    with pytest.raises(JiraUnavailable, match=r"no connection \("):
        jira_issue(OPEN_KEY)


@pytest.mark.parametrize("key", ["../../myself", "OPS-1/comment", "ops-1", "OPS-0", "OPS 1", "OPS-1?x=1", ""])
def test_what_is_not_an_issue_key_is_never_put_in_a_path(jira, key):
    with pytest.raises(JiraUnavailable, match="is not an issue key"):
        jira_issue(key)

    assert jira.calls == []


def test_without_jira_configured_nothing_is_asked(settings, fake_jira):
    settings.JIRA_URL = settings.JIRA_EMAIL = settings.JIRA_API_TOKEN = ""

    with pytest.raises(JiraUnavailable, match="no Jira site is configured"):
        jira_issue(OPEN_KEY)

    assert fake_jira.calls == []


def test_a_link_to_an_issue_on_the_jira_site_names_its_key(jira, settings):
    settings.JIRA_URL = "https://acme.atlassian.net"

    assert key_in_link("https://acme.atlassian.net/browse/OPS-4711") == "OPS-4711"
    assert key_in_link("https://ACME.atlassian.net/browse/OPS-4711/?focusedCommentId=1") == "OPS-4711"
    assert key_in_link("https://evil.example/browse/OPS-4711") == ""
    assert key_in_link("http://acme.atlassian.net/browse/OPS-4711") == "", "another scheme is another site"
    assert key_in_link("https://acme.atlassian.net/projects/OPS") == ""
    assert issue_link("OPS-4711") == "https://acme.atlassian.net/browse/OPS-4711"
