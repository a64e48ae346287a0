"""Finding 9b: principal lookup matched an unverified email that collided with alice's, and turned
her decisions into `unknown_principal`.

Decisions match a person by email only where the email is vouched for (verified by the IdP, or a
local account an administrator made); a vouched email wins over a username; collisions are logged
and shown to administrators (`manage.py check --database default`, the policy checks page).
"""

from __future__ import annotations

import logging
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse

from identity.models import Scope, User
from masking.selectors import resolve_principal
from tests.factories import grant_project_perm, make_shop_policy, make_token, make_user

pytestmark = pytest.mark.django_db


def _idp_user(username: str, email: str, *, verified: bool) -> User:
    """An account made at OIDC sign-in: keyed on the IdP subject, email as the IdP claimed it."""
    return make_user(username, email=email, email_verified=verified, oidc_subject=f"sub-{username}")


@pytest.fixture
def alice(db) -> User:
    return _idp_user("alice", "alice@example.com", verified=True)


def _resolved(name: str) -> str | None:
    principal = resolve_principal({"user": name})
    return principal.name if principal is not None else None


def test_an_unverified_email_that_collides_with_alices_does_not_mask_her(alice, shop, api_client):
    _idp_user("mallory", "ALICE@example.com", verified=False)
    make_shop_policy()
    _, token = make_token([Scope.DECISIONS])
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    column = {"instance": "prod-pg", "database": "shop", "schema": "public", "table": "customers"}
    column["column"] = "id"

    response = api_client.post(
        "/api/v1/decisions", {"principal": {"user": "alice@example.com"}, "columns": [column]}, format="json"
    )

    assert response.json()["decisions"][0]["reason"]["kind"] != "unknown_principal"
    assert _resolved("alice@example.com") == "alice"


def test_an_unverified_email_never_names_its_account(db):
    _idp_user("mallory", "carol@example.com", verified=False)

    assert _resolved("carol@example.com") is None


def test_a_verified_email_wins_over_a_username_someone_chose(alice):
    _idp_user("alice@example.com", "mallory@example.com", verified=True)  # preferred_username chosen

    assert _resolved("alice@example.com") == "alice"
    assert _resolved("mallory@example.com") == "alice@example.com"


def test_a_local_account_made_by_an_administrator_is_matched_by_its_email(db):
    make_user("bob", email="bob@example.com")  # no IdP subject: an administrator set this email

    assert _resolved("BOB@example.com") == "bob"


def test_usernames_still_name_people(alice):
    assert _resolved("alice") == "alice"


def test_two_verified_accounts_with_one_email_are_ambiguous_and_logged(alice, caplog):
    twin = _idp_user("alice2", "alice@example.com", verified=True)

    with caplog.at_level(logging.WARNING, logger="masking.selectors"):
        assert _resolved("alice@example.com") is None

    assert f"#{alice.pk}" in caplog.text and f"#{twin.pk}" in caplog.text
    assert "alice@example.com" not in caplog.text  # people's emails stay out of the log


def test_collisions_are_reported_by_the_database_system_check(alice):
    _idp_user("mallory", "Alice@Example.com", verified=False)
    _idp_user("alice@example.com", "m2@example.com", verified=True)
    out = StringIO()

    call_command("check", "--database", "default", stdout=out, stderr=out)

    report = out.getvalue()
    assert "masking.W001" in report
    assert "alice (verified), mallory (unverified) share the email 'alice@example.com'" in report
    assert "the username of alice@example.com (verified) is the email of alice (verified), mallory" in report


def test_collisions_are_shown_to_user_administrators_on_the_checks_page(alice, shop, client):
    _idp_user("mallory", "alice@example.com", verified=False)
    polly = make_user("polly")
    grant_project_perm(polly, "administer_policy", shop)
    client.force_login(polly)

    assert "People decisions could confuse" not in client.get(reverse("policy:checks")).content.decode()

    view_user = Permission.objects.get(codename="view_user", content_type__app_label="identity")
    polly.user_permissions.add(view_user)
    polly = User.objects.get(pk=polly.pk)  # permissions are cached on the instance
    client.force_login(polly)
    page = client.get(reverse("policy:checks")).content.decode()

    assert "People decisions could confuse" in page
    assert "alice (verified), mallory (unverified) share the email &#x27;alice@example.com&#x27;" in page
