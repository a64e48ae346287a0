"""The on-call client against fake PagerDuty and Opsgenie: what it sends, what it reads, and that
every answer it cannot trust is OnCallUnavailable (never a list of people)."""

from __future__ import annotations

import pytest

from jitaccess.oncall import OnCallProvider, OnCallUnavailable, on_call_now
from tests.oncall.conftest import OPSGENIE_SCHEDULE, OTHER_SCHEDULE, SCHEDULE
from tests.oncall.fake_oncall import PAGERDUTY_TOKEN, OnCall

PAGERDUTY, OPSGENIE = OnCallProvider.PAGERDUTY, OnCallProvider.OPSGENIE


def test_pagerduty_is_asked_for_the_schedule_with_users_and_its_token(providers):
    pagerduty, _ = providers
    shift = OnCall.for_hours("Eve@Example.com")
    pagerduty.schedule(SCHEDULE, "Data platform primary", shift)

    roster = on_call_now(PAGERDUTY, SCHEDULE)

    [call] = pagerduty.calls
    assert call.path == "/oncalls"
    assert call.query["schedule_ids[]"] == [SCHEDULE]
    assert call.query["include[]"] == ["users"]
    assert call.headers["authorization"] == f"Token token={PAGERDUTY_TOKEN}"
    assert call.headers["accept"] == "application/vnd.pagerduty+json;version=2"
    assert roster.schedule_name == "Data platform primary"
    [read] = roster.shifts
    assert (read.email, read.start, read.end) == ("eve@example.com", shift.start, shift.end)
    assert roster.shift_of("EVE@example.com") == read


def test_pagerduty_pages_are_followed_while_it_says_there_are_more(providers):
    pagerduty, _ = providers
    people = [OnCall(f"person{n}@example.com") for n in range(130)]
    pagerduty.schedule(SCHEDULE, "Big rotation", *people)

    roster = on_call_now(PAGERDUTY, SCHEDULE)

    assert len(roster.shifts) == 130
    assert [c.query["offset"] for c in pagerduty.calls] == [["0"], ["100"]]


def test_pagerduty_entries_for_another_schedule_never_count(providers):
    """An API (or a proxy) that ignored the filter must not make another rotation approvers."""
    pagerduty, _ = providers
    pagerduty.schedule(SCHEDULE, "Ours", OnCall("eve@example.com"))
    pagerduty.schedule(OTHER_SCHEDULE, "Theirs", OnCall("mallory@example.com"))
    pagerduty.fail("ignore_filter")

    roster = on_call_now(PAGERDUTY, SCHEDULE)

    assert [s.email for s in roster.shifts] == ["eve@example.com"]


def test_opsgenie_is_asked_flat_by_id_with_its_key(providers):
    _, opsgenie = providers
    opsgenie.schedule(OPSGENIE_SCHEDULE, "DBA on call", OnCall("carol@example.com"))

    roster = on_call_now(OPSGENIE, OPSGENIE_SCHEDULE)

    [call] = opsgenie.calls
    assert call.path == f"/v2/schedules/{OPSGENIE_SCHEDULE}/on-calls"
    assert (call.query["flat"], call.query["scheduleIdentifierType"]) == (["true"], ["id"])
    assert call.headers["authorization"] == "GenieKey og-test-key"
    assert roster.schedule_name == "DBA on call"
    assert [(s.email, s.start, s.end) for s in roster.shifts] == [("carol@example.com", None, None)]


def test_a_disabled_opsgenie_schedule_puts_nobody_on_call(providers):
    _, opsgenie = providers
    opsgenie.schedule(OPSGENIE_SCHEDULE, "Retired", OnCall("carol@example.com"))
    opsgenie.disabled.add(OPSGENIE_SCHEDULE)

    assert on_call_now(OPSGENIE, OPSGENIE_SCHEDULE).shifts == ()


@pytest.mark.parametrize(
    ("fault", "value", "says"),
    [
        ("status", 500, "HTTP 500"),
        ("status", 503, "HTTP 503"),
        ("status", 429, "HTTP 429"),
        ("status", 403, "HTTP 403"),
        ("not_json", None, "not JSON"),
        ("wrong_shape", None, "no 'oncalls' list"),
        ("redirect", None, "HTTP 302"),
        ("hang", 3, "no answer within 1 s"),
    ],
)
def test_pagerduty_answers_that_cannot_be_trusted_are_unavailable(providers, fault, value, says):
    pagerduty, _ = providers
    pagerduty.schedule(SCHEDULE, "Ours", OnCall("eve@example.com"))
    pagerduty.fail(fault, value)

    with pytest.raises(OnCallUnavailable, match=says):
        on_call_now(PAGERDUTY, SCHEDULE)
    assert len(pagerduty.calls) == 1, "no retry, no redirect followed"


@pytest.mark.parametrize(
    ("fault", "value", "says"),
    [
        ("status", 500, "HTTP 500"),
        ("not_json", None, "not JSON"),
        ("wrong_shape", None, "no 'data.onCallRecipients' list"),
        ("hang", 3, "no answer within 1 s"),
    ],
)
def test_opsgenie_answers_that_cannot_be_trusted_are_unavailable(providers, fault, value, says):
    _, opsgenie = providers
    opsgenie.schedule(OPSGENIE_SCHEDULE, "DBA on call", OnCall("carol@example.com"))
    opsgenie.fail(fault, value)

    with pytest.raises(OnCallUnavailable, match=says):
        on_call_now(OPSGENIE, OPSGENIE_SCHEDULE)


def test_a_wrong_credential_or_an_unknown_schedule_is_unavailable(providers, settings):
    pagerduty, _ = providers
    pagerduty.schedule(SCHEDULE, "Ours", OnCall("eve@example.com"))
    settings.PAGERDUTY_API_TOKEN = "revoked"
    with pytest.raises(OnCallUnavailable, match="HTTP 401"):
        on_call_now(PAGERDUTY, SCHEDULE)
    with pytest.raises(OnCallUnavailable, match="HTTP 404"):
        on_call_now(OPSGENIE, "no-such-schedule")


def test_no_credential_or_a_bad_schedule_id_asks_nobody(providers, settings):
    pagerduty, _ = providers
    settings.PAGERDUTY_API_TOKEN = ""
    with pytest.raises(OnCallUnavailable, match="no credential"):
        on_call_now(PAGERDUTY, SCHEDULE)
    settings.PAGERDUTY_API_TOKEN = PAGERDUTY_TOKEN
    with pytest.raises(OnCallUnavailable, match="not a schedule ID"):
        on_call_now(PAGERDUTY, "../users?x=")
    assert pagerduty.calls == []


def test_a_provider_that_is_down_is_unavailable(providers):
    pagerduty, _ = providers
    pagerduty.stop()

    with pytest.raises(OnCallUnavailable):
        on_call_now(PAGERDUTY, SCHEDULE)
