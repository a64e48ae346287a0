"""Reads about principals: which roles a person or a service account holds, the name decisions
know a person by, and their tokens."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Prefetch, Q, QuerySet

from identity.models import ApiToken, Role, ServiceAccount, User


def role_names_of_user(user: User, extra_groups: Iterable[str] = ()) -> frozenset[str]:
    """Roles held directly or through an IdP group (including groups a trusted service asserts)."""
    groups = set(user.groups.values_list("name", flat=True)) | set(extra_groups)
    return frozenset(
        Role.objects.filter(Q(users=user) | Q(groups__name__in=groups))
        .values_list("name", flat=True)
        .distinct()
    )


def role_names_of_service_account(account: ServiceAccount) -> frozenset[str]:
    return frozenset(Role.objects.filter(service_accounts=account).values_list("name", flat=True))


def users_in_roles(role_names: Iterable[str]) -> QuerySet[User]:
    """Active people who hold any of the roles, directly or through a group."""
    names = list(role_names)
    return (
        User.objects.filter(is_active=True)
        .filter(Q(veil_roles__name__in=names) | Q(groups__veil_roles__name__in=names))
        .distinct()
    )


def service_accounts_with_tokens() -> QuerySet[ServiceAccount]:
    """Every service account with its owner, roles and tokens (newest first), for the listing."""
    tokens = ApiToken.objects.select_related("created_by", "revoked_by").order_by("-created_at")
    return ServiceAccount.objects.select_related("owner").prefetch_related(
        Prefetch("tokens", queryset=tokens), "roles"
    )


def decision_login(user: User) -> str:
    """The name Veil's decisions find this person by (they match an email in any case or a
    username, and need exactly one active person): the verified email, unless it also names
    someone else; else the username. What veil-proxy puts in its decision requests."""
    if user.email and user.email_verified:
        others = User.objects.filter(Q(email__iexact=user.email) | Q(username=user.email), is_active=True)
        if not others.exclude(pk=user.pk).exists():
            return user.email
    return user.username


def personal_tokens_of(user: User) -> QuerySet[ApiToken]:
    """A person's own tokens, newest first (revoked and expired ones too, for their record)."""
    return ApiToken.objects.filter(user=user).select_related("revoked_by").order_by("-created_at")
