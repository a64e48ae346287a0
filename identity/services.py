"""Writes for identity: users from IdP claims, service accounts, and tokens (service accounts' and
people's own)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Model
from django.utils import timezone
from guardian.shortcuts import assign_perm, get_group_perms, get_user_perms, remove_perm

from audit.models import ActorType
from audit.services import Actor, Target, record_event
from identity.models import ApiToken, PersonalScope, Scope, ServiceAccount, User

TOKEN_PREFIX = "veil_"  # noqa: S105 - a public marker, not a secret


class TokenError(ValueError):
    """A token request that cannot be honoured (unknown scope, inactive account); `field` names
    what was wrong: scopes, expires_at or the holder."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def actor_for(principal: User | ServiceAccount | None) -> Actor:
    """Describe a principal for the audit log."""
    if isinstance(principal, ServiceAccount):
        return Actor(type=ActorType.SERVICE_ACCOUNT, id=f"sa:{principal.name}", name=principal.name)
    if isinstance(principal, User):
        return Actor(type=ActorType.USER, id=principal.canonical_subject, name=str(principal))
    return Actor(type=ActorType.ANONYMOUS)


def hash_secret(secret: str) -> str:
    """What is stored of a token's secret (and compared against, in constant time)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(raw: str) -> tuple[str, str] | None:
    """The (prefix, secret) of a plaintext `veil_<prefix>_<secret>`, or None if it is not one."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    prefix, _, secret = raw[len(TOKEN_PREFIX) :].partition("_")
    if not prefix or not secret:
        return None
    return prefix, secret


@transaction.atomic
def service_account_create(
    *, name: str, description: str, owner: User | None, created_by: User | None, channel: str
) -> ServiceAccount:
    """Create a service account (no token yet: each token is created with the scopes it needs)."""
    account = ServiceAccount.objects.create(name=name, description=description, owner=owner)
    record_event(
        action="service_account.created",
        actor=actor_for(created_by),
        channel=channel,
        target=Target("service_account", str(account.pk), account.name),
        detail={"description": description, "owner": owner.canonical_subject if owner else None},
    )
    return account


@transaction.atomic
def service_account_update(
    *, account: ServiceAccount, description: str, owner: User | None, changed_by: User | None, channel: str
) -> ServiceAccount:
    """Change what an account is for and who owns it. The owner is whom an agent's requests are
    attributed to and who answers for it, so a change is recorded with before and after."""
    locked = ServiceAccount.objects.select_for_update().get(pk=account.pk)
    before = {"description": locked.description, "owner": _subject(locked.owner)}
    after = {"description": description, "owner": _subject(owner)}
    if before == after:
        return locked
    locked.description, locked.owner = description, owner
    locked.save(update_fields=["description", "owner"])
    changed = [k for k in after if after[k] != before[k]]
    record_event(
        action="service_account.updated",
        actor=actor_for(changed_by),
        channel=channel,
        target=Target("service_account", str(locked.pk), locked.name),
        detail={"before": {k: before[k] for k in changed}, "after": {k: after[k] for k in changed}},
    )
    return locked


def _subject(user: User | None) -> str | None:
    return user.canonical_subject if user is not None else None


@transaction.atomic
def service_account_set_active(
    *, account: ServiceAccount, active: bool, changed_by: User | None, channel: str
) -> ServiceAccount:
    """Deactivate a service account (its tokens stop working and Veil no longer knows it as a
    principal, so decisions for it mask) or reactivate it. Setting the state it has changes nothing."""
    locked = ServiceAccount.objects.select_for_update().get(pk=account.pk)
    if locked.is_active == active:
        return locked
    locked.is_active = active
    locked.save(update_fields=["is_active"])
    token_cache_clear()  # this process at once; others within API_TOKEN_CACHE_S
    record_event(
        action="service_account.reactivated" if active else "service_account.deactivated",
        actor=actor_for(changed_by),
        channel=channel,
        target=Target("service_account", str(locked.pk), locked.name),
        detail={"tokens_live": locked.tokens.filter(revoked_at__isnull=True).count()},
    )
    return locked


@transaction.atomic
def token_create(
    *,
    service_account: ServiceAccount,
    name: str,
    scopes: Iterable[str],
    created_by: User | None,
    channel: str,
    expires_at: datetime | None = None,
    plaintext: str | None = None,
) -> tuple[ApiToken, str]:
    """Create a service-account token and return it with its plaintext, which is never stored or
    shown again. `plaintext` is for the demo's published token only (`jitaccess.demo`); anything
    else gets a fresh random one."""
    scope_list = _checked_scopes(scopes, Scope.values)
    if not service_account.is_active:
        raise TokenError(f"service account {service_account.name} is deactivated", field="service_account")
    return _token_insert(
        holder={"service_account": service_account},
        name=name,
        scopes=scope_list,
        created_by=created_by,
        channel=channel,
        expires_at=expires_at,
        detail={"service_account": service_account.name},
        parts=split_token(plaintext) if plaintext is not None else None,
    )


@transaction.atomic
def personal_token_create(
    *,
    user: User,
    name: str,
    created_by: User | None,
    channel: str,
    scopes: Iterable[str] = (PersonalScope.QUERY,),
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a person's own access token (the password veil-proxy checks with Veil) and return it
    with its plaintext, shown once. It acts as the person and nothing more: it carries no service
    scope, so Veil's API refuses it."""
    scope_list = _checked_scopes(scopes, PersonalScope.values)
    if not user.is_active:
        raise TokenError(f"{user.username} is deactivated", field="user")
    if expires_at is not None and expires_at <= timezone.now():
        raise TokenError("the expiry must be in the future", field="expires_at")
    return _token_insert(
        holder={"user": user},
        name=name,
        scopes=scope_list,
        created_by=created_by,
        channel=channel,
        expires_at=expires_at,
        detail={"user": user.canonical_subject},
    )


def _checked_scopes(scopes: Iterable[str], known: list[str]) -> list[str]:
    scope_list = sorted(set(scopes))
    unknown = [s for s in scope_list if s not in known]
    if unknown:
        raise TokenError(f"unknown scope(s): {', '.join(unknown)}; known: {', '.join(known)}", field="scopes")
    if not scope_list:
        raise TokenError("a token needs at least one scope", field="scopes")
    return scope_list


def _token_insert(
    *,
    holder: dict[str, Any],
    name: str,
    scopes: list[str],
    created_by: User | None,
    channel: str,
    expires_at: datetime | None,
    detail: dict[str, Any],
    parts: tuple[str, str] | None = None,
) -> tuple[ApiToken, str]:
    prefix, secret = parts or (secrets.token_hex(6), secrets.token_urlsafe(32))
    token = ApiToken.objects.create(
        **holder,
        name=name,
        prefix=prefix,
        key_hash=hash_secret(secret),
        scopes=scopes,
        created_by=created_by,
        expires_at=expires_at,
    )
    record_event(
        action="token.created",
        actor=actor_for(created_by),
        channel=channel,
        target=Target("api_token", str(token.pk), str(token)),
        detail={**detail, "scopes": scopes, "expires_at": expires_at},
    )
    return token, f"{TOKEN_PREFIX}{prefix}_{secret}"


@transaction.atomic
def token_revoke(*, token: ApiToken, revoked_by: User | None, channel: str) -> ApiToken:
    """Revoke a token; effective for the next request (a proxy's cached login within its ttl_s).
    Revoking twice changes nothing."""
    locked = (
        ApiToken.objects.select_for_update(of=("self",))
        .select_related("service_account", "user")
        .get(pk=token.pk)
    )
    if locked.revoked_at is not None:
        return locked
    locked.revoked_at, locked.revoked_by = timezone.now(), revoked_by
    locked.save(update_fields=["revoked_at", "revoked_by"])
    token_cache_clear()  # this process at once; others within API_TOKEN_CACHE_S
    holder = (
        {"service_account": locked.service_account.name}
        if locked.service_account is not None
        else {"user": _subject(locked.user)}
    )
    record_event(
        action="token.revoked",
        actor=actor_for(revoked_by),
        channel=channel,
        target=Target("api_token", str(locked.pk), str(locked)),
        detail=holder,
    )
    return locked


# Verified tokens, by the SHA-256 of the whole plaintext, for API_TOKEN_CACHE_S: the decision path
# then skips a database round trip per request. A revocation reaches other processes within that time.
_verified: dict[str, tuple[float, ApiToken]] = {}


def token_cache_clear() -> None:
    _verified.clear()


def token_authenticate(raw: str) -> ApiToken | None:
    """Return the live token for a plaintext, or None. Records last use at most once a minute."""
    cache_key = hashlib.sha256(raw.encode()).hexdigest()
    cached = _verified.get(cache_key)
    if cached is not None and cached[0] > time.monotonic():
        hit = cached[1]
        if hit.expires_at is None or hit.expires_at > timezone.now():
            return hit
    found = _token_from_database(raw)
    if found is not None and settings.API_TOKEN_CACHE_S > 0:
        if len(_verified) > 10_000:
            _verified.clear()
        _verified[cache_key] = (time.monotonic() + settings.API_TOKEN_CACHE_S, found)
    return found


def _token_from_database(raw: str) -> ApiToken | None:
    parts = split_token(raw)
    if parts is None:
        return None
    prefix, secret = parts
    # Service accounts' tokens only: a person's token logs in through veil-proxy, never to the API.
    token = (
        ApiToken.objects.select_related("service_account")
        .filter(prefix=prefix, revoked_at__isnull=True, service_account__is_active=True)
        .first()
    )
    if token is None or not hmac.compare_digest(token.key_hash, hash_secret(secret)):
        return None
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        return None
    resolution = timedelta(seconds=settings.API_TOKEN_LAST_USED_RESOLUTION_S)
    if token.last_used_at is None or now - token.last_used_at >= resolution:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def _claim_groups(claims: dict[str, Any]) -> list[str]:
    raw = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    if isinstance(raw, str):
        raw = [raw]
    return sorted({str(g).strip() for g in raw if str(g).strip()})


@transaction.atomic
def user_sync_from_claims(*, user: User, claims: dict[str, Any], subject: str) -> User:
    """Make the user match the IdP: subject (the claim `identity.oidc.subject_of` reads), email,
    names, and IdP groups (replaced, not merged)."""
    user.oidc_subject = subject
    user.email = claims.get("email", user.email) or ""
    user.email_verified = bool(claims.get("email_verified", False))
    user.first_name = (claims.get("given_name") or user.first_name)[:150]
    user.last_name = (claims.get("family_name") or user.last_name)[:150]
    user.display_name = (claims.get("name") or user.display_name)[:255]
    user.save()
    groups = [Group.objects.get_or_create(name=name[:150])[0] for name in _claim_groups(claims)]
    user.groups.set(groups)
    return user


class UserEditError(ValueError):
    """A change to a person that the admin site may not make, or that this person may not make."""


# What the admin site may change on a person. Identity comes from the IdP (`user_sync_from_claims`):
# username, email, email_verified and the subject are never edited by hand, as a re-pointed email
# would let someone else act as that person in Slack. Privileges are changed by superusers only.
USER_PROFILE_FIELDS = ("first_name", "last_name", "display_name", "is_active")
USER_PRIVILEGE_FIELDS = ("is_staff", "is_superuser", "groups", "user_permissions")


def _permission_labels(permissions: Iterable[Permission]) -> list[str]:
    return sorted(f"{p.content_type.app_label}.{p.codename}" for p in permissions)


def user_state(user: User) -> dict[str, Any]:
    """What the admin site may change on a person, as the audit log records it."""
    return {
        **{name: getattr(user, name) for name in USER_PROFILE_FIELDS},
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "groups": sorted(user.groups.values_list("name", flat=True)) if user.pk else [],
        "user_permissions": _permission_labels(user.user_permissions.select_related("content_type"))
        if user.pk
        else [],
    }


def _user_target(user: User) -> Target:
    return Target("user", str(user.pk), f"{user} ({user.username})")


@transaction.atomic
def user_create(*, username: str, password: str | None, created_by: User, channel: str) -> User:
    """Add a local person with no privileges (None: no password sign-in, the IdP only)."""
    user = User.objects.create_user(username=username, password=password)
    record_event(
        action="user.created",
        actor=actor_for(created_by),
        channel=channel,
        target=_user_target(user),
        detail={"username": username, "password_sign_in": password is not None},
    )
    return user


@transaction.atomic
def user_update(*, user: User, changes: Mapping[str, Any], changed_by: User, channel: str) -> User:
    """Change a person's profile or whether they may sign in (anyone who may change users) or their
    privileges (`USER_PRIVILEGE_FIELDS`: superusers only). A superuser's record is changed by
    superusers only. Recorded with before and after; `user.privileges_changed` when privileges
    changed, so they are easy to find.

    Locking contract: the person's row is read FOR UPDATE, so two edits do not interleave."""
    unknown = sorted(set(changes) - set(USER_PROFILE_FIELDS) - set(USER_PRIVILEGE_FIELDS))
    if unknown:
        raise UserEditError(f"{', '.join(unknown)}: not changed here (identity comes from the IdP)")
    locked = User.objects.select_for_update().get(pk=user.pk)
    before = user_state(locked)
    proposed = dict(before)
    for name, value in changes.items():
        if name == "groups":
            proposed[name] = sorted(g.name for g in value)
        elif name == "user_permissions":
            proposed[name] = _permission_labels(value)
        else:
            proposed[name] = value
    changed = [name for name in proposed if proposed[name] != before[name]]
    if not changed:
        return locked
    privileges = [name for name in changed if name in USER_PRIVILEGE_FIELDS]
    if (privileges or locked.is_superuser) and not changed_by.is_superuser:
        raise UserEditError("only a superuser changes privileges, or a superuser's record")
    scalars = [name for name in changed if name not in ("groups", "user_permissions")]
    for name in scalars:
        setattr(locked, name, changes[name])
    if scalars:
        locked.save(update_fields=scalars)
    for name in ("groups", "user_permissions"):
        if name in changed:
            getattr(locked, name).set(list(changes[name]))
    record_event(
        action="user.privileges_changed" if privileges else "user.updated",
        actor=actor_for(changed_by),
        channel=channel,
        target=_user_target(locked),
        detail={"before": {k: before[k] for k in changed}, "after": {k: proposed[k] for k in changed}},
    )
    return locked


@transaction.atomic
def user_password_set(*, user: User, password: str | None, changed_by: User, channel: str) -> User:
    """Set a person's password (None: password sign-in off). Whoever sets it can sign in as them,
    so only superusers do it."""
    if not changed_by.is_superuser:
        raise UserEditError("only a superuser sets someone's password")
    locked = User.objects.select_for_update().get(pk=user.pk)
    if password is None:
        locked.set_unusable_password()
    else:
        locked.set_password(password)
    locked.save(update_fields=["password"])
    record_event(
        action="user.password_set",
        actor=actor_for(changed_by),
        channel=channel,
        target=_user_target(locked),
        detail={"password_sign_in": password is not None},
    )
    return locked


def group_state(group: Group) -> dict[str, Any]:
    return {
        "name": group.name,
        "permissions": _permission_labels(group.permissions.select_related("content_type"))
        if group.pk
        else [],
    }


@transaction.atomic
def group_save(
    *,
    group: Group | None,
    name: str,
    permissions: Iterable[Permission],
    changed_by: User,
    channel: str,
) -> Group:
    """Create a group or change its name and permissions (granted to every member, in every
    project), superusers only. Members come from the IdP's groups claim at each sign-in."""
    if not changed_by.is_superuser:
        raise UserEditError("only a superuser changes a group's permissions")
    permissions = list(permissions)
    locked = Group.objects.select_for_update().get(pk=group.pk) if group is not None else Group()
    before = group_state(locked) if group is not None else None
    locked.name = name
    locked.save()
    locked.permissions.set(permissions)
    after = group_state(locked)
    if before == after:
        return locked
    record_event(
        action="group.updated" if before else "group.created",
        actor=actor_for(changed_by),
        channel=channel,
        target=Target("group", str(locked.pk), locked.name),
        detail={"before": before, "after": after},
    )
    return locked


@transaction.atomic
def object_permissions_set(
    *,
    obj: Model,
    holder: User | Group,
    codenames: Iterable[str],
    target: Target,
    project: str,
    changed_by: User,
    channel: str,
) -> None:
    """Make `holder` have exactly `codenames` on `obj` (django-guardian object permissions), and
    record what changed. On a project these decide who requests, approves, administers policy and
    reads the audit log, so only superusers change them.

    Locking contract: the holder's row is read FOR UPDATE, so two edits of one holder serialise."""
    if not changed_by.is_superuser:
        raise UserEditError("only a superuser changes permissions")
    holder = type(holder)._default_manager.select_for_update().get(pk=holder.pk)
    read = get_user_perms if isinstance(holder, User) else get_group_perms
    before, wanted = set(read(holder, obj)), set(codenames)
    if before == wanted:
        return
    for codename in before - wanted:
        remove_perm(codename, holder, obj)
    for codename in wanted - before:
        assign_perm(codename, holder, obj)
    who = {"user": holder.canonical_subject} if isinstance(holder, User) else {"group": holder.name}
    record_event(
        action="permissions.changed",
        actor=actor_for(changed_by),
        channel=channel,
        target=target,
        project=project,
        detail={**who, "before": sorted(before), "after": sorted(wanted)},
    )
