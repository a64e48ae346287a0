"""Sign-in through the company IdP with mozilla-django-oidc, keyed on the person's subject claim.

The subject is `sub` unless `OIDC_SUBJECT_CLAIM` names another: Entra ID's `sub` is pairwise (each
application sees another value for the same person), so with Entra ID sign-in is keyed on `oid`,
the person's object id, which is also the externalId its provisioning (SCIM) sends: the person the
directory created is the person who signs in. Entra ID puts `oid` in the ID token, not in userinfo,
so it is read from the verified ID token (userinfo may repeat it, and must then agree).

mozilla-django-oidc verifies the ID token's signature against the IdP's JWKS, its expiry and nonce,
and the `state` round trip (with PKCE). It does not check the ID token's issuer or audience, nor
that userinfo (where it reads the claims from) describes the same subject as the ID token;
`get_userinfo` below adds these checks (OpenID Connect Core 3.1.3.7 and 5.3.2); settings refuses to
start with OIDC on and no `OIDC_OP_ISSUER`. A refused sign-in is counted for the audit log (one
chained event per window, `audit.failures`) and sends the person back to the sign-in page instead of
a bare 400. Otherwise this
backend only decides which user a verified set of claims belongs to and keeps the user's IdP groups
in step with the groups claim.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView

from audit.failures import failure_count
from audit.models import Channel
from identity.models import User
from identity.services import user_sync_from_claims
from identity.signin import client_address

logger = logging.getLogger(__name__)


class VeilOIDCBackend(OIDCAuthenticationBackend):
    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Userinfo claims, accepted only for the client and subject of the verified ID token."""
        if not settings.OIDC_OP_ISSUER or payload.get("iss") != settings.OIDC_OP_ISSUER:
            self._refuse("ID token was issued by another issuer (iss mismatch)")
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if self.OIDC_RP_CLIENT_ID not in audiences:
            self._refuse("ID token was not issued to this client (aud mismatch)")
        claims: dict[str, Any] = super().get_userinfo(access_token, id_token, payload)
        if not payload.get("sub") or claims.get("sub") != payload["sub"]:
            self._refuse("userinfo sub does not match the ID token's sub")
        name = settings.OIDC_SUBJECT_CLAIM
        if name == "sub":
            return claims
        in_token, in_userinfo = payload.get(name), claims.get(name)
        if in_token is not None and in_userinfo is not None and in_token != in_userinfo:
            self._refuse(f"userinfo {name} does not match the ID token's {name}")
        subject = in_token if in_token is not None else in_userinfo
        if not isinstance(subject, str) or not subject:
            self._refuse(f"the IdP sent no {name} claim to know the person by (OIDC_SUBJECT_CLAIM)")
        return {**claims, name: subject}

    def _refuse(self, why: str) -> None:
        """mozilla-django-oidc turns this into a failed sign-in (it logs and returns None); the
        reason rides on the request so the failed-login count records it."""
        request = getattr(self, "request", None)
        if request is not None:
            request.veil_oidc_refusal = why
        raise SuspiciousOperation(why)

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return bool(subject_of(claims))

    def filter_users_by_claims(self, claims: dict[str, Any]) -> QuerySet[User]:
        return User.objects.filter(oidc_subject=subject_of(claims))

    def create_user(self, claims: dict[str, Any]) -> User:
        subject = subject_of(claims)
        username = _free_username(claims.get("preferred_username") or claims.get("email") or "", subject)
        user = User.objects.create_user(username=username)
        user.set_unusable_password()
        return user_sync_from_claims(user=user, claims=claims, subject=subject)

    def update_user(self, user: User, claims: dict[str, Any]) -> User:
        return user_sync_from_claims(user=user, claims=claims, subject=subject_of(claims))

    def get_user(self, user_id: Any) -> User | None:
        """The session's person, unless deactivated (mozilla-django-oidc does not check): a person
        the IdP deactivates is signed out of any session `identity.directory` did not end."""
        user: User | None = super().get_user(user_id)
        return user if user is not None and user.is_active else None


def subject_of(claims: dict[str, Any]) -> str:
    """The person's subject in verified claims: the `OIDC_SUBJECT_CLAIM` claim ("" if none)."""
    subject = claims.get(settings.OIDC_SUBJECT_CLAIM)
    return subject if isinstance(subject, str) else ""


def _free_username(wanted: str, subject: str) -> str:
    """Prefer the human-readable name; fall back to the subject when it is taken or empty."""
    wanted = wanted[:150]
    if wanted and not User.objects.filter(username=wanted).exists():
        return wanted
    return f"oidc-{subject}"[:150]


class VeilOIDCCallbackView(OIDCAuthenticationCallbackView):
    """The IdP callback; a forged state or an unverifiable token is counted and refused."""

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            return super().get(request)
        except SuspiciousOperation as exc:
            logger.warning("OIDC sign-in refused: %s", exc)
            failure_count(
                action="auth.sign_in_failed",
                channel=Channel.WEB,
                source=client_address(request),
                reason=f"oidc: {exc}",
            )
            return self.login_failure()
