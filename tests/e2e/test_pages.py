"""The demo's pages in Chromium, as its people meet them: a menu without what they cannot use, a
request's timeline told in order, whole bar labels on the audit dashboard, projects as cards, the
favicon, and a home page that says what to try next as each demo person (and only in the demo)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.utils import timezone

from identity.models import ApiToken
from jitaccess.demo import DEMO_PASSWORD
from jitaccess.models import AccessRequest
from tests.e2e.conftest import sign_in
from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo_site(page):
    call_command("demo_data", allow_public_passwords=True)
    return page


def menu_labels(page) -> list[str]:
    page.get_by_text("Menu", exact=True).click()
    return page.get_by_role("navigation", name="Main").get_by_role("link").all_inner_texts()


def test_the_menu_offers_approvals_only_to_those_who_approve(demo_site):
    page = demo_site
    sign_in(page, "alice", DEMO_PASSWORD)
    assert "Approvals" not in menu_labels(page)
    assert page.get_by_role("heading", name="Approve").count() == 0, "nor a card on the home page"

    page.context.clear_cookies()
    sign_in(page, "bob", DEMO_PASSWORD)
    assert "Approvals" in menu_labels(page)


def test_the_timeline_says_approved_before_grant_created(demo_site):
    page = demo_site
    granted = AccessRequest.objects.get(reason="INC-4711 refund mismatch")
    sign_in(page, "alice", DEMO_PASSWORD)

    page.goto(f"/requests/{granted.pk}/")

    steps = page.locator("ol.timeline > li strong").all_inner_texts()
    assert steps == ["Requested", "Approval recorded", "Approved", "Grant created"]


def test_the_dashboard_shows_column_names_whole(demo_site):
    page = demo_site
    sign_in(page, "dave", DEMO_PASSWORD)

    page.goto("/audit/")

    card = page.locator("section", has=page.get_by_role("heading", name="Most unmasked columns"))
    labels = card.locator(".bars .label")
    assert labels.all_inner_texts() == ["customers.email", "customers.birth_date"]
    cut = labels.evaluate_all("els => els.filter(e => e.scrollWidth > e.clientWidth).length")
    assert cut == 0, "no label is cut off with an ellipsis"
    requested = page.locator("section", has=page.get_by_role("heading", name="Most requested"))
    assert "customers (email, birth_date)" in requested.locator(".bars .label").all_inner_texts()


def test_the_home_page_shows_each_project_as_a_card_with_what_one_may_do_there(demo_site):
    page = demo_site
    sign_in(page, "erin", DEMO_PASSWORD)

    projects = page.locator("section", has=page.get_by_role("heading", name="Your projects"))
    shop = projects.locator(".project-card", has=page.get_by_role("heading", name="Shop"))
    assert shop.get_by_role("list", name="What you may do in Shop").locator("li").all_inner_texts() == [
        "Approve",
        "Policy",
        "Audit",
    ]
    assert "2 databases" in shop.inner_text()
    assert projects.locator(".project-card").count() == 2, "analytics too (erin audits it)"


def test_the_favicon_is_served_from_the_site_under_its_csp(demo_site):
    page = demo_site
    refused: list[str] = []
    page.on(
        "console",
        lambda message: refused.append(message.text) if "Content Security" in message.text else None,
    )
    sign_in(page, "alice", DEMO_PASSWORD)

    href = page.locator("link[rel=icon]").get_attribute("href")
    icon = page.request.get(href)

    assert href.startswith("/static/") and href.endswith(".svg")
    assert icon.status == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert "<svg" in icon.text()
    assert refused == []


GUIDES = {
    "alice": ("Request access", "Bob will be asked"),
    "bob": ("Approvals", "Alice asked to see"),
    "carol": ("My requests", "Staging is self-service"),
    "dave": ("Audit exports", "manage.py audit verify-export"),
    "erin": ("Break glass in an incident", "another administrator"),
    "admin": ("Rules", "Review change"),
}


def test_each_demo_person_is_told_what_to_try_next(demo_site):
    page = demo_site
    for username, (link, words) in GUIDES.items():
        page.context.clear_cookies()
        sign_in(page, username, DEMO_PASSWORD)
        guide = page.locator("section", has=page.get_by_role("heading", name="Try this next"))
        assert guide.count() == 1, username
        assert words in guide.inner_text(), username
        guide.get_by_role("link", name=link, exact=True).click()
        page.wait_for_load_state()
        assert page.locator("main h1").count() == 1 and "Not allowed" not in page.title(), (username, link)


def test_the_guide_is_gone_once_the_demo_is_not_live_and_never_shown_to_others(demo_site):
    page = demo_site
    make_user("zoe")
    sign_in(page, "zoe")
    assert page.get_by_role("heading", name="Try this next").count() == 0, "not a demo person"

    ApiToken.objects.update(revoked_at=timezone.now())  # as the README asks before going live
    page.context.clear_cookies()
    sign_in(page, "alice", DEMO_PASSWORD)
    assert page.get_by_role("heading", name="Try this next").count() == 0
