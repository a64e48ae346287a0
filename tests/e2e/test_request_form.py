"""The request form in Chromium, as alice meets it in the demo: each column says why it is masked
for her, the columns her grant already shows cannot be ticked, and the custom-hours box appears only
once Custom is chosen."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from jitaccess.demo import DEMO_PASSWORD
from jitaccess.models import AccessRequest
from masking.models import Database
from tests.e2e.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def form(page):
    call_command("demo_data", allow_public_passwords=True)
    shop = Database.objects.get(instance__key="prod-pg", name="shop")
    sign_in(page, "alice", DEMO_PASSWORD)
    page.goto(f"/requests/new/?database={shop.pk}")
    return page


def column(page, name: str):
    return page.locator("[data-column]", has=page.locator("code", has_text=name)).first


def test_each_column_says_why_it_is_masked_and_visible_ones_cannot_be_ticked(form):
    email, phone, card = column(form, "email"), column(form, "phone"), column(form, "card_number")

    assert email.get_by_role("checkbox").is_disabled(), "her grant already shows it"
    granted = AccessRequest.objects.get(reason="INC-4711 refund mismatch")
    assert f"already visible to you: your grant {granted.ref}" in email.inner_text()
    assert phone.get_by_role("checkbox").is_enabled()
    assert "masked: semantic type “phone”" in phone.inner_text()
    assert "masked: rule “Card numbers”" in card.inner_text()


def test_the_custom_hours_box_shows_only_when_custom_is_chosen(form):
    hours = form.get_by_label("Custom duration in hours")
    assert not hours.is_visible()

    form.get_by_label("4 hours").check()
    assert not hours.is_visible()
    form.get_by_label("Custom", exact=True).check()
    assert hours.is_visible()
    hours.fill("3")
    form.get_by_label("1 hour", exact=True).check()
    assert not hours.is_visible()


def test_a_request_for_a_masked_column_is_sent(form):
    column(form, "phone").get_by_role("checkbox").check()
    form.get_by_label("4 hours").check()
    form.get_by_label("Reason").fill("Courier cannot reach the customer (OPS-211)")
    form.get_by_role("button", name="Send request").click()

    form.wait_for_url("**/requests/*/")
    assert "public.customers (phone)" in form.locator("main").inner_text()
