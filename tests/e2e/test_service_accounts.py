"""An administrator gives a new SQL proxy a token in the browser, and the proxy uses it at once."""

from __future__ import annotations

import pytest
import requests

from tests.e2e.conftest import sign_in
from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_creates_a_token_in_the_browser_and_the_proxy_asks_with_it(page, live_server):
    make_user("ada", display_name="Ada Admin", is_staff=True, is_superuser=True)
    sign_in(page, "ada")
    page.get_by_text("Menu").click()
    page.get_by_role("link", name="Service accounts").click()
    page.get_by_role("link", name="Add a service account").click()
    page.get_by_label("Name").fill("prod-proxy")
    page.get_by_label("Description").fill("The SQL proxy in front of prod-pg")
    page.get_by_role("button", name="Add the service account").click()

    page.get_by_label("Name").fill("prod-proxy-1")
    page.get_by_label("Ask for mask/unmask decisions").check()
    page.get_by_role("button", name="Create the token").click()
    plaintext = page.get_by_label("Token").input_value()
    assert plaintext.startswith("veil_")

    answer = requests.post(
        f"{live_server.url}/api/v1/decisions",
        headers={"Authorization": f"Bearer {plaintext}"},
        json={
            "principal": {"service_account": "prod-proxy"},
            "query_id": "q-1",
            "columns": [
                {"instance": "prod-pg", "database": "shop", "schema": "public", "table": "t", "column": "c"}
            ],
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["decisions"][0]["action"] == "mask"

    page.get_by_role("link", name="Back to service accounts").click()
    page.get_by_role("link", name="Revoke prod-proxy-1").click()
    page.get_by_role("button", name="Revoke the token").click()
    assert page.get_by_text("Token prod-proxy-1").first.is_visible()
    refused = requests.post(
        f"{live_server.url}/api/v1/decisions",
        headers={"Authorization": f"Bearer {plaintext}"},
        json={"principal": {"service_account": "prod-proxy"}, "query_id": "q-2", "columns": []},
        timeout=10,
    )
    assert refused.status_code == 401
