"""People's own tokens for veil-proxy: held by exactly one person, scope `query` only, stored
hashed, audited when created and revoked, refused by Veil's API, and managed from the CLI too."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit.models import AuditEvent, Channel
from identity.models import ApiToken, PersonalScope, Scope, ServiceAccount
from identity.proxy_connection import ProxyConnection
from identity.selectors import decision_login, personal_tokens_of
from identity.services import TokenError, personal_token_create, token_create, token_revoke
from tests.factories import make_token, make_user

pytestmark = pytest.mark.django_db


def _create(user, **kwargs):
    kwargs.setdefault("name", "psql")
    return personal_token_create(user=user, created_by=user, channel=Channel.WEB, **kwargs)


def test_a_personal_token_belongs_to_the_person_with_the_query_scope_and_is_stored_hashed():
    alice = make_user("alice")

    token, plaintext = _create(alice)

    assert plaintext.startswith(f"veil_{token.prefix}_")
    assert (token.user, token.service_account, token.scopes) == (alice, None, [PersonalScope.QUERY])
    secret = plaintext.rsplit("_", 1)[1]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM identity_apitoken")
        stored = " ".join(str(v) for row in cursor.fetchall() for v in row)
    assert secret not in stored and plaintext not in stored
    assert list(personal_tokens_of(alice)) == [token]


def test_a_token_belongs_to_a_service_account_or_a_person_never_both_nor_neither():
    alice = make_user("alice")
    account = ServiceAccount.objects.create(name="etl")

    for holders in ({"user": alice, "service_account": account}, {}):
        with pytest.raises(IntegrityError, match="apitoken_one_holder"), transaction.atomic():
            ApiToken.objects.create(name="x", prefix=f"p{len(holders)}", key_hash="0" * 64, **holders)


def test_a_personal_token_carries_the_query_scope_and_nothing_else():
    alice = make_user("alice")

    with pytest.raises(TokenError, match="unknown scope") as refused:
        _create(alice, scopes=[PersonalScope.QUERY, Scope.DECISIONS])

    assert refused.value.field == "scopes"
    assert not ApiToken.objects.exists()


def test_a_service_account_token_cannot_log_anyone_in():
    account = ServiceAccount.objects.create(name="etl")

    with pytest.raises(TokenError, match="unknown scope"):
        token_create(
            service_account=account, name="t", scopes=["query"], created_by=None, channel=Channel.CLI
        )


def test_a_deactivated_person_gets_no_token_and_an_expiry_must_be_ahead():
    with pytest.raises(TokenError, match="deactivated"):
        _create(make_user("gone", is_active=False))
    with pytest.raises(TokenError, match="future") as refused:
        _create(make_user("alice"), expires_at=timezone.now() - timedelta(seconds=1))

    assert refused.value.field == "expires_at"
    assert not ApiToken.objects.exists()


def test_creating_and_revoking_a_personal_token_is_audited_with_the_person():
    alice = make_user("alice")
    token, _ = _create(alice)

    token_revoke(token=token, revoked_by=alice, channel=Channel.WEB)
    token_revoke(token=token, revoked_by=alice, channel=Channel.WEB)  # twice changes nothing

    created, revoked = AuditEvent.objects.filter(action__startswith="token.").order_by("seq")
    assert (created.action, revoked.action) == ("token.created", "token.revoked")
    assert created.detail == {"user": alice.canonical_subject, "scopes": ["query"], "expires_at": None}
    assert revoked.detail == {"user": alice.canonical_subject}
    assert created.target_repr == f"user:alice/psql ({token.prefix})"
    assert created.actor_id == revoked.actor_id == alice.canonical_subject
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by == alice


def test_a_personal_token_is_refused_by_the_api(api_client):
    _, plaintext = _create(make_user("alice"))

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    response = api_client.post("/api/v1/access-events", {"events": []}, format="json")

    assert response.status_code == 401


def test_decisions_know_a_person_by_their_vouched_email_else_their_username():
    verified = make_user("alice", email="Alice@Example.com", oidc_subject="sub-a", email_verified=True)
    local = make_user("ben", email="ben@example.com")  # an administrator set it: vouched for
    unverified = make_user("bob", email="bob@example.com", oidc_subject="sub-b")
    shared = make_user("carol", email="carol@example.com", email_verified=True)
    make_user("carol2", email="CAROL@example.com", oidc_subject="sub-c2", email_verified=True)
    taken = make_user("dan@example.com", email="d@corp.example", oidc_subject="sub-d")
    make_user("daniel", email="dan@example.com")

    assert decision_login(verified) == "Alice@example.com"  # as stored (Django lowers the domain)
    assert decision_login(local) == "ben@example.com"
    assert decision_login(unverified) == "bob"
    assert decision_login(shared) == "carol", "an email that names two people finds neither"
    assert decision_login(taken) is None, "a username that is someone's email finds them instead"


# --- manage.py token --------------------------------------------------------------------------


def _token_cli(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("token", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_the_cli_creates_a_query_token_for_a_person_by_username_or_email():
    alice = make_user("alice", email="alice@example.com")

    plaintext, warning = _token_cli("create", "--user", "alice", "--name", "psql", "--scope", "query")
    by_email, _ = _token_cli(
        "create",
        "--user",
        "ALICE@example.com",
        "--name",
        "dbeaver",
        "--scope",
        "query",
        "--expires-in-days",
        "7",
    )

    assert "cannot show it again" in warning
    tokens = {t.name: t for t in ApiToken.objects.filter(user=alice)}
    assert set(tokens) == {"psql", "dbeaver"}
    assert plaintext.startswith(f"veil_{tokens['psql'].prefix}_")
    assert by_email.startswith(f"veil_{tokens['dbeaver'].prefix}_")
    assert tokens["dbeaver"].expires_at is not None and tokens["psql"].expires_at is None
    assert (
        AuditEvent.objects.get(action="token.created", target_id=str(tokens["psql"].pk)).channel
        == Channel.CLI
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "nobody", "--scope", "query"], "--user: no person"),
        (["--user", "alice", "--scope", "decisions"], "--scope: unknown scope"),
        (["--user", "alice", "--scope", "query", "--create-account"], "--create-account: only with"),
        (["--user", "alice", "--scope", "query", "--expires-in-days", "0"], "--expires-in-days must be"),
        (["--service-account", "etl", "--scope", "query", "--create-account"], "--scope: unknown scope"),
    ],
)
def test_the_cli_names_the_option_it_refuses(args, message):
    make_user("alice")

    with pytest.raises(CommandError, match=message):
        _token_cli("create", "--name", "psql", *args)

    assert not ApiToken.objects.exists()


def test_the_cli_wants_exactly_one_holder():
    with pytest.raises(CommandError, match="one of the arguments --service-account --user is required"):
        _token_cli("create", "--name", "psql", "--scope", "query")


def test_token_list_and_revoke_cover_personal_tokens():
    alice = make_user("alice")
    token, _ = _create(alice)
    make_token([Scope.DECISIONS], "prod-proxy")

    listing, _ = _token_cli("list")
    revoked, _ = _token_cli("revoke", token.prefix)

    assert f"{token.prefix}  user:alice/psql  query  active" in listing
    assert "prod-proxy/test  decisions  active" in listing
    assert revoked == f"revoked user:alice/psql ({token.prefix})"
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="token.revoked", channel=Channel.CLI).count() == 1


# --- connection strings -----------------------------------------------------------------------


def test_the_connection_strings_are_ready_to_paste():
    proxy = ProxyConnection("proxy.example.com", 6432, "shop", "verify-full", "alice@example.com")

    assert proxy.psql_command() == (
        'psql "host=proxy.example.com port=6432 user=alice@example.com dbname=shop sslmode=verify-full"'
    )
    assert proxy.jdbc_url() == (
        "jdbc:postgresql://proxy.example.com:6432/shop?user=alice%40example.com&sslmode=verify-full"
    )
    assert proxy.pgpass_line("veil_ab_c:d") == "proxy.example.com:6432:shop:alice@example.com:veil_ab_c\\:d"


def test_odd_user_names_are_quoted_for_libpq_the_shell_and_jdbc():
    proxy = ProxyConnection("::1", 6432, "shop", "prefer", "o'neil $x")

    assert proxy.conninfo() == "host=::1 port=6432 user='o\\'neil $x' dbname=shop sslmode=prefer"
    assert (
        proxy.psql_command()
        == "psql 'host=::1 port=6432 user='\"'\"'o\\'\"'\"'neil $x'\"'\"' dbname=shop sslmode=prefer'"
    )
    assert proxy.jdbc_url() == "jdbc:postgresql://[::1]:6432/shop?user=o%27neil%20%24x&sslmode=prefer"


def test_the_page_strings_come_from_the_proxy_settings(settings):
    settings.VEIL_PROXY_HOST, settings.VEIL_PROXY_PORT = "pg.internal", 7432
    settings.VEIL_PROXY_DATABASE, settings.VEIL_PROXY_SSLMODE = "analytics", "require"

    proxy = ProxyConnection.for_login("bob")

    assert proxy.conninfo() == "host=pg.internal port=7432 user=bob dbname=analytics sslmode=require"
