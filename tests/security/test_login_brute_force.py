"""Finding 6: password sign-in had no brute-force protection (500 wrong passwords answered, the
right one worked after). django-axes now locks a username, and separately an address, after
LOGIN_FAILURE_LIMIT failures; failures are kept with their address; an administrator unlocks."""

from __future__ import annotations

import pytest
from axes.models import AccessFailureLog
from django.contrib.auth import SESSION_KEY
from django.core.management import call_command

from audit.models import AuditEvent
from tests.factories import make_user

pytestmark = pytest.mark.django_db
PASSWORD = "pw-for-tests-only"
LIMIT = 3


@pytest.fixture(autouse=True)
def _low_limit(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT


def sign_in(client, username: str, password: str, address: str):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_a_username_is_locked_after_the_limit_even_with_the_right_password_from_elsewhere(client):
    alice = make_user("alice")
    for n in range(LIMIT):
        sign_in(client, "alice", "guess", f"198.51.100.{n}")  # a different address each time

    response = sign_in(client, "alice", PASSWORD, "203.0.113.9")

    assert response.status_code == 429
    assert "Sign-in locked" in response.content.decode()
    assert SESSION_KEY not in client.session
    alice.refresh_from_db()
    assert alice.last_login is None


def test_an_address_is_locked_across_usernames_and_other_addresses_are_not(client):
    make_user("bob")
    for name in ("root", "admin", "carol")[:LIMIT]:
        sign_in(client, name, "guess", "192.0.2.66")

    assert sign_in(client, "bob", PASSWORD, "192.0.2.66").status_code == 429
    assert SESSION_KEY not in client.session

    response = sign_in(client, "bob", PASSWORD, "192.0.2.7")
    assert response.status_code == 302
    assert client.session[SESSION_KEY]


def test_each_failure_is_kept_with_its_source_address(client):
    make_user("alice")
    sign_in(client, "alice", "guess", "198.51.100.23")

    (failure,) = AccessFailureLog.objects.all()
    assert (failure.username, failure.ip_address, failure.locked_out) == ("alice", "198.51.100.23", False)


def test_an_administrator_unlocks_a_username_and_the_unlock_is_audited(client):
    make_user("alice")
    for _ in range(LIMIT):
        sign_in(client, "alice", "guess", "198.51.100.1")
    assert sign_in(client, "alice", PASSWORD, "203.0.113.9").status_code == 429

    call_command("signin", "unlock", "--username", "alice")

    assert sign_in(client, "alice", PASSWORD, "203.0.113.9").status_code == 302
    (event,) = AuditEvent.objects.filter(action="auth.lockout_cleared")
    assert event.detail["username"] == "alice" and event.detail["attempt_records_removed"] >= 1


def test_behind_a_trusted_proxy_the_forwarded_client_address_is_locked_not_the_proxy(client, settings):
    """With every request arriving from the proxy, locking REMOTE_ADDR would lock everyone out."""
    settings.TRUSTED_PROXY_COUNT = 1
    make_user("bob")
    for name in ("root", "admin", "carol")[:LIMIT]:
        client.post(
            "/login/",
            {"username": name, "password": "guess"},
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR="1.2.3.4, 192.0.2.66",  # the left entry is the client's own claim
        )

    ok = client.post(
        "/login/",
        {"username": "bob", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="192.0.2.7",
    )

    assert ok.status_code == 302
    assert set(AccessFailureLog.objects.values_list("ip_address", flat=True)) == {"192.0.2.66"}
