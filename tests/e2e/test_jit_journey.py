"""Journeys 1-3 and 7 in headless Chromium: request, approve, countdown, expiry, denial, break-glass.

Screenshots of each page go to the test's tmp_path (run with --basetemp to keep them)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from identity.models import Role
from jitaccess.models import AccessRequest, ProjectAccessSettings
from jitaccess.services.grants import requests_sweep
from jitaccess.states import State
from tests.e2e.conftest import sign_in
from tests.jitaccess.conftest import world  # noqa: F401 - the personas and their catalogued shop

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def bob_page(browser: Any, live_server: Any, world: Any) -> Iterator[Any]:  # noqa: F811
    """Bob, the approver, in a browser context of his own (his own cookies)."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    sign_in(page, "bob")
    yield page
    context.close()


def test_request_approve_countdown_expiry_and_denial(page, bob_page, world, tmp_path):  # noqa: F811
    sign_in(page, "alice")
    page.get_by_text("Menu").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Request access").click()
    picker = page.get_by_role("group", name="What to unmask in public.customers")  # its only table
    picker.get_by_label("phone").check()
    picker.get_by_label("email").check()
    expect(page.get_by_role("region", name="Who will approve")).to_contain_text("(Bob, Carol)")
    assert not page.get_by_label("Custom duration in hours").is_visible(), "the box waits for Custom"
    page.get_by_label("Custom", exact=True).check()
    page.get_by_label("Custom duration in hours").fill("2")
    page.get_by_label("Reason").fill("INC-4711 refund mismatch")
    page.get_by_label("Ticket", exact=True).fill("https://tickets.example.com/INC-4711")
    page.screenshot(path=str(tmp_path / "request-new.png"), full_page=True)
    page.get_by_role("button", name="Send request").click()

    request = AccessRequest.objects.get()
    assert page.get_by_role("heading", name=re.compile(request.ref)).is_visible()
    assert page.get_by_role("status").get_by_text(f"{request.ref} is waiting for approval").is_visible()
    assert page.get_by_text("Who can approve: Bob, Carol").is_visible()
    page.screenshot(path=str(tmp_path / "request-pending.png"), full_page=True)
    second = world.request("email", reason="INC-4712 duplicate charge")

    bob_page.goto("/approvals/")
    assert bob_page.get_by_text("INC-4711 refund mismatch").is_visible()
    bob_page.screenshot(path=str(tmp_path / "approvals.png"), full_page=True)
    bob_page.get_by_role("button", name=f"Approve {request.ref}").click()
    assert bob_page.get_by_text(f"{request.ref} approved: the grant runs until").is_visible()

    page.goto("/requests/")
    countdown = page.locator("#h-active ~ ul time[data-countdown]")
    countdown.filter(has_text=re.compile(r"^0[12]:[0-5]\d:[0-5]\d left$")).wait_for()
    page.screenshot(path=str(tmp_path / "my-requests.png"), full_page=True)
    page.goto("/")
    assert page.get_by_role("heading", name="Your active grants").is_visible()
    page.screenshot(path=str(tmp_path / "home.png"), full_page=True)
    page.goto(f"/requests/{request.pk}/")
    page.screenshot(path=str(tmp_path / "request-approved.png"), full_page=True)
    page.get_by_role("link", name="Relinquish now").click()
    assert page.url.endswith(f"/requests/{request.pk}/relinquish/confirm/"), "a clean URL, no bare '?'"
    assert page.get_by_role("heading", name=f"Give up {request.ref}?").is_visible()
    page.get_by_role("link", name="Keep it").click()
    assert page.locator("h1 .state").inner_text() == "Approved (grant active)"

    request.refresh_from_db()
    assert requests_sweep(now=request.expires_at + timedelta(seconds=1)).expired == 1
    page.reload()
    assert page.locator("h1 .state").inner_text() == "Expired"
    assert page.get_by_role("link", name="Relinquish now").count() == 0
    page.goto("/requests/")
    assert page.get_by_text("No active grant").is_visible()
    assert page.get_by_role("row", name=re.compile(request.ref)).get_by_text("Expired").is_visible()

    bob_page.goto("/approvals/")
    bob_page.get_by_label(f"Reason to deny {second.ref}").fill("Use the staging copy")
    bob_page.get_by_role("button", name=f"Deny {second.ref}").click()
    assert bob_page.get_by_text(f"{second.ref} denied.").is_visible()

    page.goto(f"/requests/{second.pk}/")
    assert page.get_by_text("Use the staging copy").first.is_visible()
    assert page.locator("h1 .state").inner_text() == "Denied"
    page.screenshot(path=str(tmp_path / "request-denied.png"), full_page=True)


def test_break_glass_then_review_by_an_admin(page, browser, live_server, world, tmp_path):  # noqa: F811
    oncall = Role.objects.create(name="oncall")
    oncall.users.add(world.alice)
    ProjectAccessSettings.objects.create(project=world.project).breakglass_roles.add(oncall)

    sign_in(page, "alice")
    page.goto("/breakglass/")
    assert page.get_by_role("heading", name="Security is alerted at once").is_visible()
    page.get_by_label("The whole table public.customers").check()
    page.get_by_label("30 minutes").check()
    page.get_by_label("Reason").fill("INC-9 checkout outage")
    page.screenshot(path=str(tmp_path / "breakglass.png"), full_page=True)
    page.get_by_role("button", name="Break glass now").click()
    assert page.get_by_text("Security has been alerted").is_visible()
    taken = AccessRequest.objects.get()
    assert (taken.is_breakglass, taken.state) == (True, State.APPROVED)
    assert page.locator("h1 .state").all_inner_texts() == ["Active", "Break-glass"]
    assert page.get_by_role("heading", name="Break-glass review").is_visible()
    assert page.get_by_text("Review pending").is_visible()
    assert not page.get_by_text(re.compile("Approved")).count(), "break-glass is never called an approval"

    context = browser.new_context(base_url=live_server.url, viewport={"width": 375, "height": 740})
    dave = context.new_page()
    sign_in(dave, "dave")
    dave.get_by_role("link", name=re.compile("1 break-glass grant to review")).click()
    dave.get_by_label(f"Review notes for {taken.ref}").fill("Incident confirmed; access matched the outage")
    dave.screenshot(path=str(tmp_path / "breakglass-reviews-phone.png"), full_page=True)
    assert dave.evaluate("document.documentElement.scrollWidth") <= 375, "no horizontal scrolling on a phone"
    dave.get_by_role("button", name=f"Record the review of {taken.ref}").click()
    assert dave.get_by_text("No break-glass access waits for review").is_visible()
    context.close()
    taken.refresh_from_db()
    assert taken.reviewed_by == world.dave
