"""POST /api/v1/query-logins: veil-proxy checks a person's database login (user name + personal
token) with Veil. Valid logins name the principal for decisions; every refusal says why, is
recorded as `proxy.login_failed` (bounded per address and minute) and never stores the token."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent, Channel
from identity.models import ApiToken, Scope
from identity.services import personal_token_create, token_revoke
from tests.factories import make_token, make_user

pytestmark = pytest.mark.django_db
URL = "/api/v1/query-logins"


@pytest.fixture(autouse=True)
def _fresh_failure_counters():
    cache.clear()  # the per-address failure counters live in the cache (Redis when REDIS_URL is set)
    yield
    cache.clear()


@pytest.fixture
def proxy(api_client):
    """The proxy's client: a service token with the scope `decisions`, as veil-proxy holds."""
    _, plaintext = make_token([Scope.DECISIONS, Scope.ACCESS_EVENTS], "prod-proxy")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return api_client


@pytest.fixture
def alice():
    return make_user("alice", email="alice@example.com", email_verified=True)


@pytest.fixture
def alice_token(alice) -> str:
    _, plaintext = personal_token_create(user=alice, name="psql", created_by=alice, channel=Channel.WEB)
    return plaintext


def _login(client, login: str, token: str, **extra):
    body = {
        "login": login,
        "token": token,
        "instance": "prod-pg",
        "database": "shop",
        "client_addr": "10.0.0.7",
    }
    return client.post(URL, {**body, **extra}, format="json")


def _failures():
    return list(AuditEvent.objects.filter(action="proxy.login_failed").order_by("seq"))


def test_a_persons_token_logs_them_in_as_the_principal_decisions_know(proxy, alice, alice_token):
    by_email = _login(proxy, "ALICE@example.com", alice_token)
    by_username = _login(proxy, "alice", alice_token)

    assert by_email.status_code == 200
    assert by_email.json() == {"valid": True, "principal": {"user": "alice@example.com"}, "ttl_s": 60}
    assert by_username.json() == by_email.json(), "the principal is Veil's name for her, not what she typed"
    assert not _failures()


def test_a_person_whose_email_the_idp_did_not_verify_is_their_username(proxy):
    bob = make_user("bob", email="bob@example.com", oidc_subject="sub-bob", email_verified=False)
    _, token = personal_token_create(user=bob, name="psql", created_by=bob, channel=Channel.WEB)

    assert _login(proxy, "bob", token).json()["principal"] == {"user": "bob"}


def test_a_valid_login_records_the_tokens_last_use_and_address(proxy, alice_token):
    assert _login(proxy, "alice", alice_token, client_addr="2001:db8::7").json()["valid"] is True

    token = ApiToken.objects.get(user__username="alice")
    assert token.last_used_at is not None
    assert token.last_used_from == "2001:db8::7"


def test_the_answer_is_trusted_no_longer_than_the_token_lives(proxy, alice):
    _, token = personal_token_create(
        user=alice,
        name="short",
        created_by=alice,
        channel=Channel.WEB,
        expires_at=timezone.now() + timedelta(seconds=30),
    )

    ttl = _login(proxy, "alice", token).json()["ttl_s"]

    assert 0 <= ttl <= 30


def _refused(proxy, login: str, token: str) -> str:
    response = _login(proxy, login, token)
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["valid"] is False and set(answer) == {"valid", "reason"}
    return answer["reason"]


def test_someone_elses_login_with_the_token_is_the_wrong_user(proxy, alice, alice_token):
    make_user("bob")

    assert _refused(proxy, "bob", alice_token) == "wrong_user"
    (event,) = _failures()
    token = ApiToken.objects.get(user=alice)
    assert (event.target_type, event.target_id) == ("api_token", str(token.pk)), "whose token was tried"
    assert event.detail["login"] == "bob" and event.detail["reason"] == "wrong_user"


def test_a_wrong_or_malformed_token_is_refused(proxy, alice_token):
    tampered = alice_token[:-2] + ("AA" if not alice_token.endswith("AA") else "BB")

    assert _refused(proxy, "alice", tampered) == "invalid_token"
    assert _refused(proxy, "alice", "hunter2") == "invalid_token"
    assert _refused(proxy, "alice", "veil_nosuchprefix_x") == "invalid_token"
    assert ApiToken.objects.get(user__username="alice").last_used_at is None


def test_a_service_accounts_token_is_no_persons_password(proxy, alice):
    _, service_token = make_token([Scope.DECISIONS], "etl")

    assert _refused(proxy, "alice", service_token) == "invalid_token"
    assert _refused(proxy, "etl", service_token) == "invalid_token"


def test_a_revoked_token_is_refused(proxy, alice, alice_token):
    token_revoke(token=ApiToken.objects.get(user=alice), revoked_by=alice, channel=Channel.WEB)

    assert _refused(proxy, "alice", alice_token) == "revoked"


def test_an_expired_token_is_refused(proxy, alice, alice_token):
    ApiToken.objects.filter(user=alice).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert _refused(proxy, "alice", alice_token) == "expired"


def test_a_token_without_the_query_scope_is_refused(proxy, alice, alice_token):
    ApiToken.objects.filter(user=alice).update(scopes=[])

    assert _refused(proxy, "alice", alice_token) == "missing_scope"


def test_a_deactivated_person_is_refused(proxy, alice, alice_token):
    alice.is_active = False
    alice.save(update_fields=["is_active"])

    assert _refused(proxy, "alice", alice_token) == "inactive_user"


def test_a_failure_is_audited_without_the_token(proxy, alice_token):
    _refused(proxy, "alice", alice_token + "x")

    (event,) = _failures()
    assert event.channel == Channel.API and event.actor_type == "anonymous"
    assert event.detail == {
        "login": "alice",
        "reason": "invalid_token",
        "instance": "prod-pg",
        "database": "shop",
        "client_addr": "10.0.0.7",
        "proxy": "prod-proxy",
    }
    stored = json.dumps([e.detail for e in AuditEvent.objects.all()]) + "".join(
        e.target_repr for e in AuditEvent.objects.all()
    )
    assert alice_token.rsplit("_", 1)[1] not in stored


def test_failures_from_one_address_are_recorded_a_bounded_number_of_times_a_minute(proxy, settings):
    settings.QUERY_LOGIN_FAILURES_RECORDED_PER_MINUTE = 3
    with time_machine.travel("2026-12-07 10:00:05+00:00", tick=False) as clock:
        for _ in range(50):
            _refused(proxy, "mallory", "guess")
        other = _login(proxy, "mallory", "guess", client_addr="10.0.0.8")
        assert other.json()["reason"] == "invalid_token"

        events = _failures()
        assert [e.detail["client_addr"] for e in events] == ["10.0.0.7"] * 3 + ["10.0.0.8"]
        assert "recording_paused" in events[2].detail and "recording_paused" not in events[1].detail

        clock.shift(timedelta(minutes=1))
        _refused(proxy, "mallory", "guess")

    latest = _failures()[-1]
    assert latest.detail["client_addr"] == "10.0.0.7"
    assert latest.detail["unrecorded_before"] == 47, "the failures past the bound are counted"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"login": None}, "login"),
        ({"login": ""}, "login"),
        ({"login": "x" * 255}, "login"),
        ({"token": ["veil_x"]}, "token"),
        ({"token": "t" * 513}, "token"),
        ({"instance": ""}, "instance"),
        ({"database": ["shop"]}, "database"),
        ({"client_addr": "not-an-address"}, "client_addr"),
        ({"pasword": "typo"}, "pasword"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(proxy, alice_token, change, field):
    body = {"login": "alice", "token": alice_token, "instance": "prod-pg", "database": "shop"}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}

    response = proxy.post(URL, body, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert field in error["fields"] and error["message"].startswith(f"{field}:")
    assert not _failures() and ApiToken.objects.get(user__username="alice").last_used_at is None


def test_a_login_without_an_address_is_checked(proxy, alice_token):
    body = {"login": "alice", "token": alice_token, "instance": "prod-pg", "database": "shop"}

    assert proxy.post(URL, body, format="json").json()["valid"] is True


def test_only_a_service_token_with_the_decisions_scope_may_ask(api_client, client, alice, alice_token):
    body = {"login": "alice", "token": alice_token, "instance": "prod-pg", "database": "shop"}

    assert api_client.post(URL, body, format="json").status_code == 401
    _, catalog_only = make_token([Scope.CATALOG_WRITE], "pusher")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {catalog_only}")
    assert api_client.post(URL, body, format="json").status_code == 403
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {alice_token}")
    assert api_client.post(URL, body, format="json").status_code == 401, "a person's token is no API token"
    client.force_login(alice)
    response = client.post(URL, body, content_type="application/json")
    assert response.status_code == 401, "nor is a person's session"
    assert ApiToken.objects.get(user=alice).last_used_at is None


def test_the_schema_lists_the_operation(tmp_path):
    out = tmp_path / "schema.json"
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", "--file", str(out)
    )
    operation = json.loads(out.read_text())["paths"]["/api/v1/query-logins"]["post"]

    assert operation["operationId"] == "query_logins_create"
    assert operation["security"] == [{"serviceToken": []}]
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    schema = json.loads(out.read_text())["components"]["schemas"][body]
    assert set(schema["properties"]) == {"login", "token", "instance", "database", "client_addr"}
    assert set(schema["required"]) == {"login", "token", "instance", "database"}


def test_a_person_decisions_cannot_tell_apart_is_refused(proxy):
    """A username that is someone else's verified email: decisions under it would be the other
    person's, so the login is refused rather than answered with that name."""
    dan = make_user("dan@example.com", email="dan@corp.example", oidc_subject="sub-dan")
    make_user("daniel", email="dan@example.com", oidc_subject="sub-daniel", email_verified=True)
    _, token = personal_token_create(user=dan, name="psql", created_by=dan, channel=Channel.WEB)

    assert _refused(proxy, "dan@example.com", token) == "ambiguous_user"


def test_an_unvouched_email_is_no_login(proxy):
    """An IdP account whose email the IdP did not verify is not found by it, in decisions or here."""
    mallory = make_user("mallory", email="alice@example.com", oidc_subject="sub-m", email_verified=False)
    _, token = personal_token_create(user=mallory, name="psql", created_by=mallory, channel=Channel.WEB)

    assert _refused(proxy, "alice@example.com", token) == "wrong_user"
    assert _login(proxy, "mallory", token).json()["principal"] == {"user": "mallory"}


def test_the_principal_is_the_person_decisions_resolve(proxy):
    """What the proxy is told to ask decisions for finds exactly this person there."""
    from masking.selectors import resolve_principal

    people = [
        make_user("ann", email="ann@example.com", email_verified=True),
        make_user("ben", email="ben@example.com"),  # local account: its email is vouched for
        make_user("cat", email="cat@example.com", oidc_subject="sub-cat", email_verified=False),
        make_user("dan@example.com", email="dan2@example.com", oidc_subject="sub-dan", email_verified=True),
        make_user("eve", email="ann@example.com", oidc_subject="sub-eve", email_verified=False),
    ]
    for person in people:
        _, token = personal_token_create(user=person, name="psql", created_by=person, channel=Channel.WEB)
        answer = _login(proxy, person.username, token).json()
        found = resolve_principal(answer["principal"])
        assert found is not None and found.id == str(person.pk), (person.username, answer)
