"""End-to-end sign-in through a real OpenID provider (tests/idp, node `oidc-provider`).

A `requests.Session` plays the browser: Veil's /oidc/authenticate/ → the IdP's login and consent
forms → back to /oidc/callback/. mozilla-django-oidc then exchanges the code at the IdP's token
endpoint, verifies the ID token against the IdP's JWKS and reads userinfo — all over real HTTP.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.utils import timezone

from audit.failures import failure_tallies_fold
from audit.models import AuditEvent
from identity.models import Scope, User
from tests.factories import make_token
from tests.identity.conftest import ALICE, IdP

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
]

HTTP_TIMEOUT_S = 10
MAX_STEPS = 20


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": values.get("action", ""), "fields": {}})
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1]["fields"][values["name"]] = values.get("value", "")


def _only_form(response: requests.Response) -> tuple[str, dict[str, str]]:
    parser = _FormParser()
    parser.feed(response.text)
    assert len(parser.forms) == 1, f"expected one form at {response.url}, got: {response.text[:2000]}"
    form = parser.forms[0]
    return urljoin(response.url, form["action"]), dict(form["fields"])


@dataclass
class Browser:
    """What a browser ends up with after the round trip through the IdP."""

    session: requests.Session
    base_url: str
    authorization_request: str
    callback: requests.Response

    def signed_in_user_id(self) -> int | None:
        key = self.session.cookies.get(django_settings.SESSION_COOKIE_NAME)
        if key is None:
            return None
        store = import_module(django_settings.SESSION_ENGINE).SessionStore(session_key=key)
        value = store.get(SESSION_KEY)
        return int(value) if value is not None else None

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base_url + path, allow_redirects=False, timeout=HTTP_TIMEOUT_S)


def sign_in(base_url: str, idp: IdP, login: str, *, tamper_state: bool = False) -> Browser:
    """Go through Veil → IdP login form → IdP consent form → Veil's callback, like a browser.

    Redirects are followed by hand so the callback URL can be altered before it is requested.
    """
    session = requests.Session()
    callback_prefix = f"{base_url}/oidc/callback/"
    response = session.get(f"{base_url}/oidc/authenticate/", allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 302, response.text
    authorization_request = response.headers["Location"]
    assert authorization_request.startswith(idp.authorization_endpoint + "?")

    for _ in range(MAX_STEPS):
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(callback_prefix):
                break
            response = session.get(location, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
            continue
        assert response.status_code == 200, f"{response.url}: {response.status_code} {response.text[:2000]}"
        assert response.url.startswith(idp.issuer), response.url
        action, fields = _only_form(response)
        if fields.get("prompt") == "login":
            fields.update(login=login, password="any password")  # dev interactions check no password
        else:
            assert fields.get("prompt") == "consent", fields
        response = session.post(action, data=fields, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    else:
        pytest.fail(f"never redirected back to {callback_prefix}; IdP log:\n{idp.log()}")

    if tamper_state:
        parts = urlsplit(location)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        query["state"] = secrets.token_urlsafe(24)
        location = urlunsplit(parts._replace(query=urlencode(query)))
    callback = session.get(location, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    return Browser(session, base_url, authorization_request, callback)


def assert_signed_in_as(browser: Browser, user: User) -> None:
    assert browser.callback.status_code == 302, browser.callback.text[:2000]
    assert browser.callback.headers["Location"] == "/"
    assert browser.signed_in_user_id() == user.pk
    home = browser.get("/")
    assert home.status_code == 200, home.headers.get("Location")
    assert user.display_name in home.text


def assert_not_signed_in(browser: Browser) -> None:
    assert browser.signed_in_user_id() is None
    home = browser.get("/")
    assert home.status_code == 302
    assert urlsplit(home.headers["Location"]).path == "/login/"


def assert_refused(browser: Browser, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    """Refused: back to the sign-in page with a message, nobody signed in, the refusal audited."""
    assert browser.callback.status_code == 302
    assert browser.callback.headers["Location"] == "/login/?sso=failed"
    assert reason in caplog.text
    assert_not_signed_in(browser)
    assert not User.objects.exists()
    assert not AuditEvent.objects.filter(action="auth.sign_in").exists()
    (failed,) = failure_tallies_fold(now=timezone.now() + timedelta(hours=1))  # counted, then chained
    assert (failed.action, failed.detail["sources"][0]["reason"][:4]) == ("auth.sign_in_failed", "oidc")
    page = browser.get("/login/?sso=failed")
    assert "Single sign-on did not complete" in page.text


def test_sign_in_through_the_idp_creates_a_user_keyed_on_sub(live_server: Any, oidc_settings: IdP) -> None:
    browser = sign_in(live_server.url, oidc_settings, ALICE["sub"])

    user = User.objects.get(oidc_subject=ALICE["sub"])
    assert_signed_in_as(browser, user)
    assert "code_challenge=" in browser.authorization_request  # PKCE is sent
    assert user.email == ALICE["email"]
    assert user.email_verified is True
    assert (user.first_name, user.last_name, user.display_name) == (
        "Alice",
        "Example",
        "Alice Example",
    )
    assert not user.has_usable_password()
    assert sorted(user.groups.values_list("name", flat=True)) == sorted(ALICE["groups"])
    event = AuditEvent.objects.get(action="auth.sign_in")
    assert event.actor_id == f"oidc:{ALICE['sub']}"
    assert event.detail == {"method": "oidc", "groups": sorted(ALICE["groups"])}


def test_groups_are_replaced_at_each_sign_in(live_server: Any, oidc_settings: IdP) -> None:
    sign_in(live_server.url, oidc_settings, ALICE["sub"])
    user = User.objects.get(oidc_subject=ALICE["sub"])
    assert sorted(user.groups.values_list("name", flat=True)) == ["engineering", "oncall"]

    oidc_settings.set_accounts([{**ALICE, "groups": ["finance"], "name": "Alice Renamed"}])
    browser = sign_in(live_server.url, oidc_settings, ALICE["sub"])

    assert User.objects.count() == 1
    user.refresh_from_db()
    assert_signed_in_as(browser, user)
    assert list(user.groups.values_list("name", flat=True)) == ["finance"]
    assert user.display_name == "Alice Renamed"
    assert AuditEvent.objects.filter(action="auth.sign_in").count() == 2


def test_user_is_matched_on_sub_not_email(live_server: Any, oidc_settings: IdP) -> None:
    local = User.objects.create_user(username=ALICE["email"], email=ALICE["email"], password="local-pw-1234")

    browser = sign_in(live_server.url, oidc_settings, ALICE["sub"])

    new = User.objects.get(oidc_subject=ALICE["sub"])
    assert new.pk != local.pk
    assert new.username == f"oidc-{ALICE['sub']}"  # the email is taken as a username by the local user
    assert_signed_in_as(browser, new)
    local.refresh_from_db()
    assert local.oidc_subject is None
    assert local.has_usable_password()
    assert not local.groups.exists()


# A person as Entra ID knows them: `sub` is pairwise (this application's own value for them), `oid`
# their object id, in the ID token only, and the externalId Entra ID's provisioning sends.
ENTRA_OBJECT_ID = "6f2c9a51-3b1e-4d7a-9c0e-1a2b3c4d5e6f"
ENTRA_ALICE: dict[str, Any] = {
    **ALICE,
    "sub": "Xk3lQ0pairwise-for-veil-9vN2sT7wYb",
    "oid": ENTRA_OBJECT_ID,
    "id_token_only": ["oid"],
}


def provision(body: dict[str, Any]) -> User:
    """The person the directory creates (SCIM POST /Users, as the IdP sends it)."""
    _, token = make_token([Scope.SCIM], account_name="directory")
    response = Client(HTTP_AUTHORIZATION=f"Bearer {token}").post(
        "/scim/v2/Users", data=json.dumps(body), content_type="application/scim+json"
    )
    assert response.status_code == 201, response.content
    return User.objects.get(scim_id=response.json()["id"])


def scim_user(user_name: str, external_id: str) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "externalId": external_id,
        "userName": user_name,
        "active": True,
        "displayName": "Alice Example",
        "emails": [{"primary": True, "type": "work", "value": ALICE["email"]}],
        "name": {"givenName": "Alice", "familyName": "Example"},
    }


def test_a_person_entra_id_provisioned_signs_in_by_oid_as_that_person(
    live_server: Any, oidc_settings: IdP, settings: Any
) -> None:
    settings.OIDC_SUBJECT_CLAIM = "oid"
    oidc_settings.set_accounts([ENTRA_ALICE])
    provisioned = provision(scim_user("alice@contoso.com", ENTRA_OBJECT_ID))

    browser = sign_in(live_server.url, oidc_settings, ENTRA_ALICE["sub"])

    assert User.objects.count() == 1, "the pairwise sub made a second Veil user"
    provisioned.refresh_from_db()
    assert_signed_in_as(browser, provisioned)
    assert provisioned.oidc_subject == ENTRA_OBJECT_ID
    assert sorted(provisioned.groups.values_list("name", flat=True)) == sorted(ALICE["groups"])
    assert AuditEvent.objects.get(action="auth.sign_in").actor_id == f"oidc:{ENTRA_OBJECT_ID}"


def test_a_person_okta_provisioned_signs_in_by_sub_as_that_person(
    live_server: Any, oidc_settings: IdP
) -> None:
    provisioned = provision(scim_user("alice@okta.example", ALICE["sub"]))

    browser = sign_in(live_server.url, oidc_settings, ALICE["sub"])

    assert User.objects.count() == 1
    provisioned.refresh_from_db()
    assert_signed_in_as(browser, provisioned)
    assert provisioned.oidc_subject == ALICE["sub"]


def test_a_sign_in_without_the_subject_claim_is_refused(
    live_server: Any, oidc_settings: IdP, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.OIDC_SUBJECT_CLAIM = "oid"  # and the IdP sends none: nobody to match, nobody created

    browser = sign_in(live_server.url, oidc_settings, ALICE["sub"])

    assert_refused(browser, "the IdP sent no oid claim", caplog)


def test_userinfo_naming_another_oid_than_the_id_token_is_refused(
    live_server: Any, oidc_settings: IdP, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.OIDC_SUBJECT_CLAIM = "oid"
    oidc_settings.set_accounts([{**ENTRA_ALICE, "id_token_only": [], "userinfo_claims": {"oid": "another"}}])

    browser = sign_in(live_server.url, oidc_settings, ENTRA_ALICE["sub"])

    assert_refused(browser, "userinfo oid does not match the ID token's oid", caplog)


def test_tampered_state_is_rejected(
    live_server: Any, oidc_settings: IdP, caplog: pytest.LogCaptureFixture
) -> None:
    browser = sign_in(live_server.url, oidc_settings, ALICE["sub"], tamper_state=True)

    assert_refused(browser, "OIDC callback state not found in session", caplog)


def test_callback_replayed_in_another_browser_is_rejected(live_server: Any, oidc_settings: IdP) -> None:
    browser = sign_in(live_server.url, oidc_settings, ALICE["sub"])
    # The first browser's callback consumed the code; a second browser without Veil's session
    # (so without the state it issued) replays the same callback URL.
    intruder = requests.Session()
    replay = intruder.get(browser.callback.url, allow_redirects=False, timeout=HTTP_TIMEOUT_S)

    assert replay.status_code == 302
    assert_not_signed_in(Browser(intruder, live_server.url, "", replay))
    assert User.objects.count() == 1  # only the legitimate browser's sign-in


def test_token_signed_by_another_key_is_rejected(
    live_server: Any,
    oidc_settings: IdP,
    other_idp: IdP,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ours = requests.get(oidc_settings.jwks_endpoint, timeout=HTTP_TIMEOUT_S).json()["keys"]
    theirs = requests.get(other_idp.jwks_endpoint, timeout=HTTP_TIMEOUT_S).json()["keys"]
    # Same key id, different key: the key lookup succeeds, so only the signature check can refuse.
    assert [k["kid"] for k in ours] == [k["kid"] for k in theirs]
    assert ours[0]["n"] != theirs[0]["n"]
    settings.OIDC_OP_JWKS_ENDPOINT = other_idp.jwks_endpoint

    browser = sign_in(live_server.url, oidc_settings, ALICE["sub"])

    assert_refused(browser, "JWS token verification failed", caplog)


def test_token_from_another_issuer_is_rejected(
    live_server: Any, oidc_settings: IdP, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.OIDC_OP_ISSUER = "https://idp.example.com"

    browser = sign_in(live_server.url, oidc_settings, ALICE["sub"])

    assert_refused(browser, "iss mismatch", caplog)


def test_userinfo_about_another_subject_is_rejected(
    live_server: Any, oidc_settings: IdP, caplog: pytest.LogCaptureFixture
) -> None:
    # A misbehaving IdP: the ID token is Alice's, userinfo claims to be about someone else.
    oidc_settings.set_accounts([{**ALICE, "userinfo_sub": "someone-else"}])

    browser = sign_in(live_server.url, oidc_settings, ALICE["sub"])

    assert browser.callback.status_code == 302
    assert "userinfo sub does not match the ID token's sub" in caplog.text
    assert_not_signed_in(browser)
    assert not User.objects.exists()
    (failed,) = failure_tallies_fold(now=timezone.now() + timedelta(hours=1))
    assert failed.detail["sources"][0]["reason"] == "oidc: userinfo sub does not match the ID token's sub"


def test_login_page_offers_single_sign_on(live_server: Any, oidc_settings: IdP) -> None:
    page = requests.get(f"{live_server.url}/login/", timeout=HTTP_TIMEOUT_S)

    assert page.status_code == 200
    assert "Sign in with single sign-on" in page.text
    assert 'href="/oidc/authenticate/"' in page.text
