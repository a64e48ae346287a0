"""Service-account tokens: shown once, stored hashed, scoped, revocable, expiring, audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent, Channel
from identity.models import ApiToken, Scope
from identity.services import TokenError, token_revoke
from tests.factories import catalog_payload, make_token

pytestmark = pytest.mark.django_db
URL = "/api/v1/catalog"


def _post(api_client, token: str):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api_client.post(URL, catalog_payload(), format="json")


def test_the_secret_is_not_stored_in_clear(shop):
    _, plaintext = make_token([Scope.CATALOG_WRITE])
    secret = plaintext.rsplit("_", 1)[1]

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM identity_apitoken")
        stored = " ".join(str(v) for row in cursor.fetchall() for v in row)
    assert secret not in stored
    assert plaintext not in stored


def test_a_valid_token_records_its_last_use(api_client, shop):
    _, plaintext = make_token([Scope.CATALOG_WRITE])

    assert _post(api_client, plaintext).status_code == 200
    assert ApiToken.objects.get().last_used_at is not None


def test_a_revoked_token_is_refused(api_client, shop):
    _, plaintext = make_token([Scope.CATALOG_WRITE])
    token_revoke(token=ApiToken.objects.get(), revoked_by=None, channel=Channel.CLI)

    response = _post(api_client, plaintext)

    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_an_expired_token_is_refused(api_client, shop):
    _, plaintext = make_token([Scope.CATALOG_WRITE])
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert _post(api_client, plaintext).status_code == 401


@pytest.mark.parametrize(
    "header_token",
    ["veil_nothex_wrongsecret", "not-a-veil-token", "veil_", "veil_abc"],
)
def test_a_wrong_token_is_refused(api_client, shop, header_token):
    make_token([Scope.CATALOG_WRITE])

    assert _post(api_client, header_token).status_code == 401


def test_a_right_prefix_with_a_wrong_secret_is_refused(api_client, shop):
    _, plaintext = make_token([Scope.CATALOG_WRITE])
    forged = plaintext[:-4] + ("AAAA" if not plaintext.endswith("AAAA") else "BBBB")

    assert _post(api_client, forged).status_code == 401


def test_a_token_of_a_deactivated_account_is_refused(api_client, shop):
    account, plaintext = make_token([Scope.CATALOG_WRITE])
    account.is_active = False
    account.save()

    assert _post(api_client, plaintext).status_code == 401


def test_a_token_with_another_scope_is_forbidden(api_client, shop):
    _, plaintext = make_token([Scope.DECISIONS, Scope.ACCESS_EVENTS])

    assert _post(api_client, plaintext).status_code == 403


def test_unknown_scopes_are_refused():
    with pytest.raises(TokenError, match="unknown scope"):
        make_token(["everything"])


def test_creation_and_revocation_are_audited(shop):
    make_token([Scope.DECISIONS], account_name="sql-proxy")
    token_revoke(token=ApiToken.objects.get(), revoked_by=None, channel=Channel.CLI)
    token_revoke(token=ApiToken.objects.get(), revoked_by=None, channel=Channel.CLI)

    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions == ["token.created", "token.revoked"], "a second revoke records nothing"
    assert AuditEvent.objects.get(action="token.created").detail["scopes"] == ["decisions"]


def test_cli_list_says_when_there_are_no_tokens(capsys):
    call_command("token", "list")
    assert capsys.readouterr().out.strip() == "no tokens (create one with `token create`)"


def test_cli_prints_the_token_once_and_refuses_bad_scopes(capsys):
    call_command(
        "token",
        "create",
        "--service-account",
        "etl",
        "--create-account",
        "--name",
        "nightly",
        "--scope",
        "decisions",
    )
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("veil_")
    call_command("token", "list")
    assert printed not in capsys.readouterr().out

    with pytest.raises(CommandError, match="--scope: unknown scope"):
        call_command("token", "create", "--service-account", "etl", "--name", "x", "--scope", "root")
