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


def email_vouched(user: User) -> bool:
    """Whether a person's email stands for them: verified by the IdP, or a local account's (only an
    administrator sets it). The rule of `masking.selectors.email_vouched_q`, for one person."""
    return bool(user.email) and (user.email_verified or user.oidc_subject is None)


def decision_login(user: User) -> str | None:
    """The name Veil's decisions find this person, and only this person, by: their vouched email,
    else their username. None when neither does (two people share the vouched email, or the
    username is someone else's vouched email): decisions asked under such a name would be
    unknown_principal or, worse, another person's, so veil-proxy must not log them in.

    Mirrors `masking.selectors.resolve_principal` (identity cannot import masking); a test keeps
    the two in agreement."""
    candidates = [user.email] if email_vouched(user) else []
    for name in [*candidates, user.username]:
        found = list(
            User.objects.filter(
                (Q(email__iexact=name) & (Q(email_verified=True) | Q(oidc_subject__isnull=True)))
                | Q(username=name),
                is_active=True,
            )[:3]
        )
        by_email = [u for u in found if u.email and u.email.lower() == name.lower() and email_vouched(u)]
        chosen = by_email or [u for u in found if u.username == name]
        if [u.pk for u in chosen] == [user.pk]:
            return name
    return None


def personal_tokens_of(user: User) -> QuerySet[ApiToken]:
    """A person's own tokens, newest first (revoked and expired ones too, for their record)."""
    return ApiToken.objects.filter(user=user).select_related("revoked_by").order_by("-created_at")
