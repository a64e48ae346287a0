"""The Insights page in headless Chromium: agents' probes, masked reads and requests next to
people's, as a policy administrator reads them (the reports reached Veil through the real API)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import sign_in
from tests.policy.conftest import policy_world  # noqa: F401 - the catalogued shop and its policy admins
from tests.policy.test_people_and_agents import activity  # noqa: F401 - people's and agents' reports

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_policy_admin_sees_agents_next_to_people(page, activity, tmp_path):  # noqa: F811
    sign_in(page, "polly")
    page.goto("/policy/insights/")

    section = page.get_by_role("region", name="People and agents, last 28 days")
    expect(section).to_be_visible()
    compared = section.get_by_role("table", name="People and agents compared")
    # principals, probes, masked reads, requests, approved / denied / pending
    expect(compared.get_by_role("row", name="People").get_by_role("cell")).to_have_text(
        ["2", "1", "0", "1", "1 / 0 / 0"]
    )
    expect(compared.get_by_role("row", name="Agents").get_by_role("cell")).to_have_text(
        ["1", "2", "1", "1", "0 / 1 / 0"]
    )
    each = section.get_by_role("table", name="Probes, masked reads and requests per person and agent")
    rows = each.get_by_role("row")
    expect(rows.nth(1).get_by_role("cell")).to_have_text(
        ["support-agent", "agent", "2", "1", "1", "0 / 1 / 0"]
    )
    expect(rows.nth(2).get_by_role("cell")).to_have_text(["bob", "person", "1", "0", "0", "0 / 0 / 0"])
    page.screenshot(path=str(tmp_path / "insights-people-and-agents.png"), full_page=True)
