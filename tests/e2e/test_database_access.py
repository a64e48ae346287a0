"""A person gets a token for veil-proxy on the Database access page, the proxy's login check
accepts it at once, and once she revokes it (after confirming) the check refuses it."""

from __future__ import annotations

import pytest
import requests

from identity.models import Scope
from tests.e2e.conftest import sign_in
from tests.factories import make_token, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _proxy_login(live_server, proxy_token: str, login: str, password: str) -> dict:
    answer = requests.post(
        f"{live_server.url}/api/v1/query-logins",
        headers={"Authorization": f"Bearer {proxy_token}"},
        json={
            "login": login,
            "token": password,
            "instance": "prod-pg",
            "database": "shop",
            "client_addr": "10.1.2.3",
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_person_creates_a_proxy_token_logs_in_with_it_and_revokes_it(page, live_server):
    make_user("alice", email="alice@example.com", email_verified=True, oidc_subject="sub-alice")
    _, proxy_token = make_token([Scope.DECISIONS], "prod-proxy")
    sign_in(page, "alice")

    page.get_by_text("Menu").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Database access").click()
    page.get_by_label("Name").fill("psql")
    page.get_by_label("Expires in (days)").fill("30")
    page.get_by_role("button", name="Create the token").click()

    plaintext = page.get_by_label("Token").input_value()
    assert plaintext.startswith("veil_")
    psql = page.locator("#psql-command").inner_text()
    assert psql == 'psql "host=localhost port=6432 user=alice@example.com dbname=shop sslmode=prefer"'
    assert page.locator("#jdbc-url").inner_text() == (
        "jdbc:postgresql://localhost:6432/shop?user=alice%40example.com&sslmode=prefer"
    )
    assert _proxy_login(live_server, proxy_token, "alice@example.com", plaintext) == {
        "valid": True,
        "principal": {"user": "alice@example.com"},
        "ttl_s": 60,
    }

    page.get_by_role("link", name="Back to database access").click()
    row = page.get_by_role("row", name="psql")
    assert "from 10.1.2.3" in row.inner_text(), "the listing shows the token's last use"
    assert plaintext not in page.content(), "the secret is shown once"
    row.get_by_role("link", name="Revoke psql").click()
    page.get_by_role("button", name="Revoke the token").click()

    assert page.get_by_text("revoked", exact=True).first.is_visible()
    assert _proxy_login(live_server, proxy_token, "alice@example.com", plaintext) == {
        "valid": False,
        "reason": "revoked",
    }
