"""The web UI shell, as a person uses it: sign in, navigate, browse the catalog, sign out."""

from __future__ import annotations

import pytest

from audit.models import Channel
from audit.services import SYSTEM
from masking.services.catalog import catalog_upsert
from tests.e2e.conftest import sign_in
from tests.factories import catalog_payload, grant_project_perm, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sign_in_browse_the_catalog_and_sign_out(page, shop, tmp_path):
    admin = make_user("polly", display_name="Polly Policy")
    grant_project_perm(admin, "administer_policy", shop)
    payload = catalog_payload()
    catalog_upsert(
        instance_spec=payload["instance"],
        databases=payload["databases"],
        prune=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )

    sign_in(page, "polly")
    assert page.get_by_role("heading", name="Welcome, Polly Policy").is_visible()

    page.get_by_text("Menu").click()
    page.get_by_role("link", name="Catalog", exact=True).click()
    rows = page.locator("tbody tr")
    assert rows.count() == 3
    phone_row = page.locator("tr", has_text="phone")
    assert "phone · level 3?" in phone_row.inner_text(), "the suggestion is shown as a question"
    assert "unclassified" in phone_row.inner_text()
    page.get_by_label("Search columns").fill("email")
    page.get_by_role("button", name="Search").click()
    assert page.locator("tbody tr").count() == 1
    page.screenshot(path=str(tmp_path / "catalog.png"), full_page=True)

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login/")
    assert page.get_by_role("heading", name="Sign in to Veil").is_visible()


def test_a_wrong_password_is_refused_with_a_message(page):
    make_user("alice")

    sign_in_attempt = page.goto("/login/")
    assert sign_in_attempt.ok
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()

    assert page.get_by_role("alert").is_visible()
    assert "/login/" in page.url


def test_the_layout_is_usable_on_a_phone(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 375, "height": 740})
    page = context.new_page()
    make_user("alice")
    sign_in(page, "alice")

    page.get_by_text("Menu").click()
    assert page.get_by_role("link", name="My access").is_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, "no horizontal scrolling on a phone"
    context.close()
