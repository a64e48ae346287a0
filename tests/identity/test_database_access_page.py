"""The Database access page: every signed-in person creates their own proxy tokens (shown once,
never cached, with ready connection strings), sees them with their last use, and revokes them
after confirming; nobody sees or revokes anyone else's."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils.html import escape

from audit.models import AuditEvent, Channel
from identity.models import ApiToken
from identity.services import personal_token_create
from tests.factories import make_token, make_user

pytestmark = pytest.mark.django_db
PAGE = reverse("database-access:index")


@pytest.fixture
def alice(client):
    person = make_user("alice", email="alice@example.com", email_verified=True)
    client.force_login(person)
    return person


def test_signing_in_is_needed(client):
    response = client.get(PAGE)

    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_page_tells_a_person_where_and_as_whom_to_connect(client, alice, settings):
    settings.VEIL_PROXY_HOST, settings.VEIL_PROXY_PORT = "pg.example.com", 7432

    page = client.get(PAGE).content.decode()

    assert "<code>alice@example.com</code>" in page
    assert "<code>pg.example.com</code>" in page and "<code>7432</code>" in page
    assert "No token yet." in page


def test_a_new_token_is_shown_once_with_ready_connection_strings_and_never_cached(client, alice):
    response = client.post(PAGE, {"name": "psql", "expires_in_days": "30"})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(user=alice)
    plaintext = response.context["plaintext"]
    page = response.content.decode()
    assert plaintext.startswith(f"veil_{token.prefix}_") and plaintext in page
    assert escape('psql "host=localhost port=6432 user=alice@example.com dbname=shop sslmode=prefer"') in page
    assert escape("jdbc:postgresql://localhost:6432/shop?user=alice%40example.com&sslmode=prefer") in page
    assert token.scopes == ["query"] and token.expires_at is not None
    event = AuditEvent.objects.get(action="token.created")
    assert (event.actor_id, event.channel) == (alice.canonical_subject, Channel.WEB)

    listing = client.get(PAGE).content.decode()
    assert plaintext not in listing and f"veil_{token.prefix}_…" in listing


def test_a_bad_expiry_is_named_and_creates_nothing(client, alice):
    response = client.post(PAGE, {"name": "psql", "expires_in_days": "0"})

    assert response.status_code == 200
    assert response.context["form"].errors == {
        "expires_in_days": ["Ensure this value is greater than or equal to 1."]
    }
    assert not ApiToken.objects.exists() and not AuditEvent.objects.filter(action="token.created").exists()


def test_revoking_asks_first_then_revokes_and_is_audited(client, alice):
    token, _ = personal_token_create(user=alice, name="psql", created_by=alice, channel=Channel.WEB)
    url = reverse("database-access:token-revoke", args=[token.pk])

    confirm = client.get(url)
    token.refresh_from_db()
    assert confirm.status_code == 200 and b"Revoke the token" in confirm.content
    assert token.revoked_at is None

    response = client.post(url)

    assert response.status_code == 302 and response["Location"] == PAGE
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by == alice
    event = AuditEvent.objects.get(action="token.revoked")
    assert event.actor_id == alice.canonical_subject and event.detail == {"user": alice.canonical_subject}
    assert "revoked" in client.get(PAGE).content.decode()


def test_nobody_sees_or_revokes_anyone_elses_token(client, alice):
    bob = make_user("bob")
    bobs, _ = personal_token_create(user=bob, name="bobs-psql", created_by=bob, channel=Channel.WEB)
    url = reverse("database-access:token-revoke", args=[bobs.pk])

    assert "bobs-psql" not in client.get(PAGE).content.decode()
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    bobs.refresh_from_db()
    assert bobs.revoked_at is None


def test_a_service_accounts_token_cannot_be_revoked_here(client, alice):
    make_token(["decisions"], "prod-proxy")
    token = ApiToken.objects.get(service_account__name="prod-proxy")

    assert client.post(reverse("database-access:token-revoke", args=[token.pk])).status_code == 404


def test_the_service_account_pages_leave_a_persons_token_alone(client):
    admin = make_user("ada", is_staff=True, is_superuser=True)
    alice = make_user("alice")
    token, _ = personal_token_create(user=alice, name="psql", created_by=alice, channel=Channel.WEB)
    client.force_login(admin)

    assert client.post(reverse("identity:token-revoke", args=[token.pk])).status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
