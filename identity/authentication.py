"""API authentication for service accounts: `Authorization: Bearer veil_<prefix>_<secret>`."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from identity.models import ApiToken, ServiceAccount
from identity.services import token_authenticate


def bearer_token(header: str) -> ApiToken:
    """The live token an `Authorization` header carries. Raises `NotAuthenticated` when there is
    no header and `AuthenticationFailed` when it is malformed or names no live token."""
    if not header:
        raise exceptions.NotAuthenticated()
    keyword, _, raw = header.partition(" ")
    if keyword != "Bearer" or not raw.strip():
        raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
    token = token_authenticate(raw.strip())
    if token is None:
        raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
    return token


class ServiceTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ServiceAccount, ApiToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None  # not a service: session authentication may still apply
        token = bearer_token(header)
        assert token.service_account is not None  # `token_authenticate` finds service accounts' only
        return token.service_account, token

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


class TokenScope(permissions.BasePermission):
    """Service tokens must carry the view's `token_scope`; people must be signed in (and the view
    checks their object permissions itself)."""

    message = "This token lacks the scope this endpoint needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, ApiToken):
            return view.token_scope in request.auth.scopes
        return bool(request.user and request.user.is_authenticated)


class ServiceTokenOnly(TokenScope):
    """Endpoints only a data-access service calls (decisions, access events)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ApiToken) and super().has_permission(request, view)
