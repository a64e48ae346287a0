"""Access reviews in Chromium: a reviewer removes access from their list, and a policy administrator
sets the project's schedule and opens a review from the menu."""

from __future__ import annotations

import pytest

from jitaccess.reviews.models import AccessReviewCampaign, AccessReviewSettings
from tests.e2e.conftest import sign_in
from tests.jitaccess.conftest import world  # noqa: F401  (the personas)
from tests.jitaccess.reviews import Reviewed, make_reviewed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def reviewed(world) -> Reviewed:  # noqa: F811
    return make_reviewed(world)


def item_card(page, member: str):
    return page.locator("article", has=page.get_by_role("heading", name=member))


def test_a_reviewer_removes_access_from_their_list(page, reviewed):
    reviewed.open()
    sign_in(page, "bob")

    page.get_by_text("Menu", exact=True).click()
    page.get_by_role("link", name="Access reviews", exact=True).click()
    alice = item_card(page, "Alice Engineer (alice)")
    assert "Last unmask" in alice.inner_text()
    assert "proposed for removal" in item_card(page, "Carol (carol)").inner_text()
    alice.get_by_label("Note (optional)").fill("Left the support team")
    alice.get_by_role("button", name="Remove").click()

    page.wait_for_selector(".messages")
    assert "Removed: Alice Engineer (alice)" in page.locator(".messages").inner_text()
    assert item_card(page, "Alice Engineer (alice)").count() == 0, "answered: no longer waiting"
    assert list(reviewed.exemption.users.all()) == []


def test_a_policy_administrator_sets_the_schedule_and_opens_a_review(page, reviewed):
    sign_in(page, "dave")

    page.get_by_text("Menu", exact=True).click()
    page.get_by_role("link", name="Access review settings").click()
    page.get_by_role("link", name="shop").click()
    page.get_by_label("Review this project's unmask access on a schedule").check()
    page.get_by_label("Days between reviews").fill("91")
    page.get_by_label("Days reviewers have to answer").fill("10")
    page.get_by_label("What nobody answered by the deadline").select_option("remove")
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector(".messages")
    settings = AccessReviewSettings.objects.get(project=reviewed.world.project)
    assert (settings.enabled, settings.answer_days, settings.on_deadline) == (True, 10, "remove")

    page.get_by_role("button", name="Open a review now").click()
    page.wait_for_url("**/access-reviews/*/")
    campaign = AccessReviewCampaign.objects.get()
    assert f"Access review {campaign.ref}" in page.locator("h1").inner_text()
    assert page.locator("article").count() == 4
    assert "then what nobody answered is removed" in page.locator("main").inner_text()
