"""Sign-in through the company IdP with mozilla-django-oidc, keyed on the `sub` claim.

mozilla-django-oidc verifies the ID token's signature against the IdP's JWKS, its audience, expiry
and nonce, and the `state` round trip; this backend only decides which user a verified set of
claims belongs to and keeps the user's IdP groups in step with the groups claim.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from identity.models import User
from identity.services import user_sync_from_claims


class VeilOIDCBackend(OIDCAuthenticationBackend):
    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return bool(claims.get("sub"))

    def filter_users_by_claims(self, claims: dict[str, Any]) -> QuerySet[User]:
        return User.objects.filter(oidc_subject=claims.get("sub"))

    def create_user(self, claims: dict[str, Any]) -> User:
        username = _free_username(claims.get("preferred_username") or claims.get("email") or "", claims["sub"])
        user = User.objects.create_user(username=username)
        user.set_unusable_password()
        return user_sync_from_claims(user=user, claims=claims)

    def update_user(self, user: User, claims: dict[str, Any]) -> User:
        return user_sync_from_claims(user=user, claims=claims)


def _free_username(wanted: str, subject: str) -> str:
    """Prefer the human-readable name; fall back to the subject when it is taken or empty."""
    wanted = wanted[:150]
    if wanted and not User.objects.filter(username=wanted).exists():
        return wanted
    return f"oidc-{subject}"[:150]
