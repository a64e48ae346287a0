"""The demo's home page in Chromium: an administrator finds the public API token and the commands
that use it, ready to copy; an engineer does not."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from jitaccess.demo import DEMO_PASSWORD, DEMO_TOKEN
from tests.e2e.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_admin_home_page_offers_the_demo_token_and_its_commands(page, live_server, settings):
    settings.SITE_URL = live_server.url
    call_command("demo_data", allow_public_passwords=True)

    sign_in(page, "admin", DEMO_PASSWORD)
    card = page.locator("section", has=page.get_by_role("heading", name="Try the decision API"))
    assert card.is_visible()
    commands = [c.inner_text() for c in card.locator("pre").all()]
    assert len(commands) == 2 and all(DEMO_TOKEN in c for c in commands)
    curl, sdk = commands
    assert curl.startswith(f"curl -s {live_server.url}/api/v1/decisions")
    assert sdk.startswith(".venv/bin/python sdk/examples/mask_query.py")
    # The body in the page is the JSON the API takes, unescaped for the shell it is pasted into.
    body = json.loads(curl.split("-d '", 1)[1].rstrip("'"))
    assert body["principal"] == {"user": "alice"}

    page.context.clear_cookies()
    sign_in(page, "alice", DEMO_PASSWORD)
    assert page.get_by_role("heading", name="Try the decision API").count() == 0
