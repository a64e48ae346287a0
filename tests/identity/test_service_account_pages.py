"""The service-account pages: administrators create accounts and tokens (shown once) and revoke them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from identity.models import ApiToken, ServiceAccount
from identity.services import token_authenticate, token_cache_clear
from tests.factories import make_token, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client):
    user = make_user("ada", is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


def _create_token(client, account, **fields):
    data = {"name": "prod-proxy-1", "scopes": ["decisions", "access-events"], **fields}
    return client.post(reverse("identity:token-new", args=[account.pk]), data)


def test_someone_without_the_permission_is_refused_with_the_reason(client):
    account, _ = make_token(["decisions"], "sql-proxy")
    token = account.tokens.get()
    client.force_login(make_user("alice"))
    for url in [
        reverse("identity:service-accounts"),
        reverse("identity:service-account-new"),
        reverse("identity:token-new", args=[account.pk]),
        reverse("identity:token-revoke", args=[token.pk]),
    ]:
        response = client.get(url)
        assert response.status_code == 403, url
        assert "for Veil&#x27;s administrators" in response.content.decode(), url
    assert client.post(reverse("identity:token-revoke", args=[token.pk])).status_code == 403
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None
    assert b"Service accounts" not in client.get(reverse("jitaccess:requests")).content


def test_an_admin_adds_an_account_and_is_taken_to_its_first_token(client, admin):
    response = client.post(
        reverse("identity:service-account-new"),
        {"name": "etl-nightly", "description": "The nightly ETL", "owner": admin.pk},
    )
    account = ServiceAccount.objects.get(name="etl-nightly")
    assert response["Location"] == reverse("identity:token-new", args=[account.pk])
    assert account.owner == admin
    event = AuditEvent.objects.get(action="service_account.created")
    assert event.target_id == str(account.pk)
    assert event.actor_id == admin.canonical_subject
    assert b"Service accounts" in client.get(reverse("identity:service-accounts")).content


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "etl nightly"}, "name", "Enter a valid “slug”"),
        ({"name": "sql-proxy"}, "name", "Service account with this Name already exists."),
        ({"name": ""}, "name", "This field is required."),
    ],
)
def test_a_bad_account_is_refused_on_its_field(client, admin, data, field, message):
    make_token(["decisions"], "sql-proxy")
    before = ServiceAccount.objects.count()
    response = client.post(reverse("identity:service-account-new"), data)
    assert response.status_code == 200
    assert message in response.context["form"].errors[field][0]
    assert ServiceAccount.objects.count() == before
    assert not AuditEvent.objects.filter(action="service_account.created").exists()


def test_a_token_is_shown_once_works_and_is_never_stored(client, admin):
    account = ServiceAccount.objects.create(name="sql-proxy")
    response = _create_token(client, account, expires_in_days=30)
    assert response.status_code == 200
    plaintext = response.context["plaintext"]
    assert plaintext in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    token = token_authenticate(plaintext)
    assert token is not None and token.service_account == account
    assert token.scopes == ["access-events", "decisions"]
    assert token.expires_at is not None and token.created_by == admin
    assert plaintext.rsplit("_", 1)[1] not in token.key_hash
    listing = client.get(reverse("identity:service-accounts")).content.decode()
    assert f"veil_{token.prefix}_…" in listing
    assert plaintext not in listing
    assert AuditEvent.objects.filter(action="token.created", target_id=str(token.pk)).exists()


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"scopes": []}, "scopes", "This field is required."),
        ({"scopes": ["root"]}, "scopes", "Select a valid choice. root is not one of the available choices."),
        ({"expires_in_days": 0}, "expires_in_days", "greater than or equal to 1"),
        ({"name": ""}, "name", "This field is required."),
    ],
)
def test_a_bad_token_is_refused_on_its_field(client, admin, fields, field, message):
    account = ServiceAccount.objects.create(name="sql-proxy")
    response = _create_token(client, account, **fields)
    assert response.status_code == 200
    assert message in response.context["form"].errors[field][0]
    assert not ApiToken.objects.exists()


def test_a_deactivated_account_gets_no_token(client, admin):
    account = ServiceAccount.objects.create(name="old-proxy", is_active=False)
    response = _create_token(client, account)
    assert "deactivated" in response.context["form"].non_field_errors()[0]
    assert not ApiToken.objects.exists()


def test_revoking_asks_first_then_refuses_the_token(client, admin):
    account, plaintext = make_token(["decisions"], "sql-proxy")
    token = account.tokens.get()
    url = reverse("identity:token-revoke", args=[token.pk])
    confirm = client.get(url)
    assert b"Revoke token test of sql-proxy?" in confirm.content
    assert token_authenticate(plaintext) is not None, "a GET changes nothing"

    response = client.post(url)
    assert response["Location"] == f"{reverse('identity:service-accounts')}#sa-{account.pk}"
    token_cache_clear()
    assert token_authenticate(plaintext) is None
    token.refresh_from_db()
    assert token.revoked_by == admin
    assert AuditEvent.objects.filter(action="token.revoked", target_id=str(token.pk)).exists()
    assert b"revoked" in client.get(reverse("identity:service-accounts")).content


def test_unknown_accounts_and_tokens_are_404(client, admin):
    assert client.get(reverse("identity:token-new", args=[999])).status_code == 404
    assert client.post(reverse("identity:token-revoke", args=[999])).status_code == 404


def test_deactivating_an_account_refuses_its_tokens_until_it_is_reactivated(client, admin):
    account, plaintext = make_token(["decisions"], "sql-proxy")
    url = reverse("identity:service-account-active", args=[account.pk])

    response = client.post(url, {"active": "0"})

    assert response["Location"] == f"{reverse('identity:service-accounts')}#sa-{account.pk}"
    assert token_authenticate(plaintext) is None
    assert b"Reactivate" in client.get(reverse("identity:service-accounts")).content
    client.post(url, {"active": "1"})
    assert token_authenticate(plaintext) is not None
    assert list(
        AuditEvent.objects.filter(target_type="service_account")
        .order_by("seq")
        .values_list("action", "actor_id")
    ) == [
        ("service_account.deactivated", admin.canonical_subject),
        ("service_account.reactivated", admin.canonical_subject),
    ]


def test_deactivating_is_a_post_by_an_administrator_with_a_valid_state(client, admin):
    account, _ = make_token(["decisions"], "sql-proxy")
    url = reverse("identity:service-account-active", args=[account.pk])

    assert client.get(url).status_code == 405
    refused = client.post(url, {"active": "maybe"})
    assert refused.status_code == 400 and b"active" in refused.content
    client.force_login(make_user("alice"))
    assert client.post(url, {"active": "0"}).status_code == 403
    account.refresh_from_db()
    assert account.is_active
    assert not AuditEvent.objects.filter(target_type="service_account").exists()
