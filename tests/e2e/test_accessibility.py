"""Accessibility in the browser: on a phone a table that scrolls sideways can be reached from the
keyboard, the menu closes on Escape and gives focus back, and the table filter announces what it
left. The page-by-page checks that need no browser are in tests/test_accessibility.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse

from jitaccess.demo import load_demo_data
from masking.models import Database
from tests.e2e.conftest import sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def demo_live(transactional_db) -> None:
    load_demo_data()


def scrollers_out_of_keyboard_reach(page: Any) -> tuple[int, list[str]]:
    return page.evaluate(
        """() => {
          const scrolling = [...document.querySelectorAll('main *')].filter((el) => {
            const style = getComputedStyle(el);
            return ['auto', 'scroll'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1;
          });
          const unreachable = scrolling.filter((el) => el.tabIndex < 0);
          return [scrolling.length, unreachable.map((el) => el.outerHTML.slice(0, 80))];
        }"""
    )


def test_on_a_phone_a_wide_table_can_be_scrolled_from_the_keyboard(browser, live_server, demo_live):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    phone = context.new_page()
    try:
        sign_in(phone, "admin", "veil-demo")
        phone.goto(reverse("identity:service-accounts"))
        scrolling, unreachable = scrollers_out_of_keyboard_reach(phone)
        assert scrolling >= 1, "the tokens table is wider than a phone"
        assert unreachable == []
        region = phone.locator("main [data-scroll-focus]").first
        region.focus()
        assert region.evaluate("el => el === document.activeElement"), "Tab reaches the table"
        named = region.evaluate(
            "el => el.tagName === 'TABLE' ? !!el.querySelector('caption') : !!el.getAttribute('aria-label')"
        )
        assert named, "and is named (a table by its caption, a region by its label)"
        page_width = phone.evaluate("document.documentElement.scrollWidth")
        assert page_width <= 390, "the page itself does not scroll sideways"
    finally:
        context.close()


def test_escape_closes_the_menu_and_focus_returns_to_it(page, live_server, demo_live):
    sign_in(page, "alice", "veil-demo")
    summary = page.locator("details.menu summary")
    summary.focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.querySelector('details.menu').open")
    page.keyboard.press("Escape")
    assert not page.evaluate("document.querySelector('details.menu').open")
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"
    outline = summary.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline == "solid", "the focused menu button shows the focus ring"


def test_the_table_filter_tells_screen_readers_what_it_left(page, live_server, demo_live):
    database = Database.objects.order_by("pk").first()
    assert database is not None
    sign_in(page, "alice", "veil-demo")
    page.goto(f"{reverse('jitaccess:request-new')}?database={database.pk}")
    status = page.locator("[data-picker-status]")
    page.get_by_label("Filter tables and columns").fill("email")
    assert re.fullmatch(r"\d+ tables? shown\.", status.text_content() or "")
    page.get_by_label("Filter tables and columns").fill("no-such-column-anywhere")
    assert status.text_content() == "No table or column matches the filter."
