"""The request form in Chromium, as alice meets it in the demo: she picks a table, sees which of its
columns are masked for her and why (her grant's columns cannot be ticked), ticks one, sees which
approval policy applies and who will be asked, picks a duration (the custom-hours box appears
only for Custom) and sends it; the request's page then names the same approvers. Without
JavaScript the form still works and its button shows the preview."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from identity.models import Role
from jitaccess.demo import DEMO_PASSWORD
from jitaccess.models import AccessRequest, ApprovalPolicy, ApprovalStage
from jitaccess.states import State
from tests.e2e.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(page):
    call_command("demo_data", allow_public_passwords=True)
    sign_in(page, "alice", DEMO_PASSWORD)
    return page


@pytest.fixture
def no_script_page(browser: Any, live_server: Any, demo: Any) -> Iterator[Any]:
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(15000)
    sign_in(page, "alice", DEMO_PASSWORD)
    yield page
    context.close()


def open_customers(page) -> Any:
    """From the menu's page to the customers table of prod-pg/shop, as a person clicks it."""
    page.goto("/requests/new/")
    page.get_by_label("Database", exact=True).select_option(label="prod-pg/shop (prod)")
    page.get_by_role("button", name="Show its tables").click()
    tables = page.get_by_role("region", name="Tables in prod-pg/shop")
    tables.get_by_role("link", name=re.compile(r"public\.customers")).click()
    return page.get_by_role("group", name="What to unmask in public.customers")


def row(picker, column: str) -> Any:
    return picker.locator("tr", has=picker.page.locator("code", has_text=re.compile(f"^{column}$")))


def test_pick_a_table_see_why_tick_see_who_approves_choose_a_duration_and_send(demo):
    page = demo
    granted = AccessRequest.objects.get(reason="INC-4711 refund mismatch", state=State.APPROVED)

    picker = open_customers(page)
    tile = page.get_by_role("link", name=re.compile(r"public\.customers"))
    assert tile.get_attribute("aria-current") == "true"
    assert "4 of 8 columns masked for you" in tile.inner_text()
    email, phone = row(picker, "email"), row(picker, "phone")
    assert email.get_by_role("checkbox").is_disabled(), "her grant already shows it"
    assert "Visible to you" in email.inner_text() and f"your grant {granted.ref} until" in email.inner_text()
    assert "Masked" in phone.inner_text() and "its semantic type “phone”" in phone.inner_text()
    assert "rule “" not in phone.inner_text()

    preview = page.get_by_role("region", name="Who will approve")
    expect(preview).to_contain_text("Tick what you need")
    phone.get_by_role("checkbox").check()
    expect(preview).to_contain_text("Production PII")
    expect(preview).to_contain_text("1 approval from the role “pii-approvers” (Bob Lead, Erin Security)")
    expect(preview).to_contain_text("At most 1 day under the policy 'Production PII'")
    assert page.locator("[data-preview]").get_attribute("aria-live") == "polite"
    assert page.get_by_role("button", name="Show who will approve").count() == 0, "the script asks instead"

    hours = page.get_by_label("Custom duration in hours")
    assert not hours.is_visible()
    page.get_by_label("7 days").check()
    expect(preview).to_contain_text("(you asked 7 days)")
    assert not hours.is_visible()
    page.get_by_label("Custom", exact=True).check()
    assert hours.is_visible()
    hours.fill("3")
    expect(preview).not_to_contain_text("you asked")
    page.get_by_label("4 hours").check()
    assert not hours.is_visible()
    page.get_by_label("Reason").fill("Courier cannot reach the customer (OPS-211)")
    page.get_by_role("button", name="Send request").click()

    page.wait_for_url("**/requests/*/")
    sent = AccessRequest.objects.get(reason="Courier cannot reach the customer (OPS-211)")
    assert (sent.policy_title, sent.column_names) == ("Production PII", ["phone"])
    main = page.locator("main").inner_text()
    assert "public.customers (phone)" in main and "Who can approve: Bob Lead, Erin Security" in main


def test_a_policy_in_stages_is_previewed_stage_by_stage(demo):
    policy = ApprovalPolicy.objects.get(title="Production PII")
    for position, (name, role) in enumerate(
        [("Data owner", "pii-approvers"), ("Security", "security-oncall")]
    ):
        stage = ApprovalStage.objects.create(policy=policy, position=position, name=name)
        stage.approver_roles.add(Role.objects.get(name=role))
    page = demo

    picker = open_customers(page)
    row(picker, "address").get_by_role("checkbox").check()

    stages = page.get_by_role("region", name="Who will approve").locator("ol.preview-stages > li")
    expect(stages).to_have_count(2)
    texts = stages.all_inner_texts()
    assert texts[0].startswith("Data owner: 1 approval from the role “pii-approvers”")
    assert texts[1].startswith("Security, once the stage before is approved: 1 approval")


def test_the_table_filter_narrows_the_tiles_as_one_types(demo):
    page = demo
    open_customers(page)
    tables = page.get_by_role("region", name="Tables in prod-pg/shop")

    page.get_by_label("Filter tables and columns").fill("card")

    expect(tables.get_by_role("link", name=re.compile(r"public\.orders"))).to_be_hidden()
    assert tables.get_by_role("link", name=re.compile(r"public\.payments")).is_visible()
    assert tables.get_by_role("status").text_content() == "1 table shown."


def test_on_a_phone_the_form_does_not_scroll_sideways(browser, live_server, demo):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    phone = context.new_page()
    try:
        sign_in(phone, "alice", DEMO_PASSWORD)
        picker = open_customers(phone)
        row(picker, "phone").get_by_role("checkbox").check()
        expect(phone.get_by_role("region", name="Who will approve")).to_contain_text("Production PII")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


def test_without_javascript_the_button_shows_the_preview_and_the_form_still_sends(no_script_page):
    page = no_script_page
    picker = open_customers(page)
    row(picker, "phone").get_by_role("checkbox").check()
    page.get_by_label("4 hours").check()

    page.get_by_role("button", name="Show who will approve").click()

    preview = page.get_by_role("region", name="Who will approve")
    expect(preview).to_contain_text("Production PII")
    assert "Bob Lead, Erin Security" in preview.inner_text()
    assert (
        row(page.get_by_role("group", name="What to unmask in public.customers"), "phone")
        .get_by_role("checkbox")
        .is_checked()
    )
    assert not AccessRequest.objects.filter(column_names=["phone"]).exists()
    page.get_by_label("Reason").fill("Courier cannot reach the customer (OPS-211)")
    page.get_by_role("button", name="Send request").click()
    page.wait_for_url("**/requests/*/")
    assert "public.customers (phone)" in page.locator("main").inner_text()
