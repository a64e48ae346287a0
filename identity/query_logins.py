"""Database logins through veil-proxy: is this user name and password a person's live token?

The proxy sends what a client gave it (`POST /api/v1/query-logins`); Veil answers the name its
decisions know the person by, or why not. The token is compared, never stored or logged. A failure
is recorded as a `proxy.login_failed` audit event, at most QUERY_LOGIN_FAILURES_RECORDED_PER_MINUTE
per client address and minute: a client hammering the proxy must not grow the hash chain without
bound. Failures past the bound are counted in the cache and the count is written into the next
event recorded for that address.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from audit.models import Channel
from audit.services import ANONYMOUS, Target, record_event
from identity.models import ApiToken, PersonalScope, ServiceAccount, User
from identity.selectors import decision_login, email_vouched
from identity.services import hash_secret, split_token

logger = logging.getLogger(__name__)

# The longest a proxy may trust an answer: a revoked token or a deactivated person is refused
# within this bound on every proxy.
QUERY_LOGIN_TTL_S = 60
_UNRECORDED_KEPT_S = 86400


class LoginFailure(StrEnum):
    """Why a login is refused. The proxy tells the client only 28P01; the audit log keeps which."""

    INVALID_TOKEN = "invalid_token"  # noqa: S105 - malformed, unknown, wrong secret, or not a person's
    WRONG_USER = "wrong_user"
    REVOKED = "revoked"
    EXPIRED = "expired"
    MISSING_SCOPE = "missing_scope"
    INACTIVE_USER = "inactive_user"
    AMBIGUOUS_USER = "ambiguous_user"  # no name finds the person alone in decisions


@dataclass(frozen=True)
class QueryLogin:
    """The answer for the proxy: the principal and how long to trust it, or the reason."""

    valid: bool
    principal_user: str = ""
    ttl_s: int = 0
    reason: str = ""


def query_login_check(
    *,
    login: str,
    raw_token: str,
    instance: str,
    database: str,
    client_addr: str | None,
    proxy: ServiceAccount,
) -> QueryLogin:
    """Check a login; record the token's use, or the failure. Safe to repeat (the proxy retries)."""
    token, failure = _match(login, raw_token)
    if failure is None:
        assert token is not None and token.user is not None
        principal = decision_login(token.user)
        if principal is not None:
            _record_use(token, client_addr)
            return QueryLogin(valid=True, principal_user=principal, ttl_s=_ttl_s(token))
        failure = LoginFailure.AMBIGUOUS_USER
    _record_failure(
        login=login,
        reason=failure,
        token=token,
        instance=instance,
        database=database,
        client_addr=client_addr,
        proxy=proxy,
    )
    return QueryLogin(valid=False, reason=failure)


def _match(login: str, raw_token: str) -> tuple[ApiToken | None, LoginFailure | None]:
    """The person's token the password names (None unless its secret matched) and what is wrong."""
    parts = split_token(raw_token)
    if parts is None:
        return None, LoginFailure.INVALID_TOKEN
    prefix, secret = parts
    digest = hash_secret(secret)
    token = ApiToken.objects.select_related("user").filter(prefix=prefix, user__isnull=False).first()
    if token is None or not hmac.compare_digest(token.key_hash, digest):
        return None, LoginFailure.INVALID_TOKEN
    person = token.user
    assert person is not None
    if not _names(login, person):
        return token, LoginFailure.WRONG_USER
    if token.revoked_at is not None:
        return token, LoginFailure.REVOKED
    if token.expires_at is not None and token.expires_at <= timezone.now():
        return token, LoginFailure.EXPIRED
    if PersonalScope.QUERY not in token.scopes:
        return token, LoginFailure.MISSING_SCOPE
    if not person.is_active:
        return token, LoginFailure.INACTIVE_USER
    return token, None


def _names(login: str, person: User) -> bool:
    """Whether the user name a client typed is this person: their username, or their email in any
    case where it is vouched for (as decisions match principals)."""
    if login == person.username:
        return True
    return email_vouched(person) and login.lower() == person.email.lower()


def _ttl_s(token: ApiToken) -> int:
    if token.expires_at is None:
        return QUERY_LOGIN_TTL_S
    left = int((token.expires_at - timezone.now()).total_seconds())
    return max(0, min(QUERY_LOGIN_TTL_S, left))


def _record_use(token: ApiToken, client_addr: str | None) -> None:
    """Last use and address, written at most once per API_TOKEN_LAST_USED_RESOLUTION_S unless the
    address changed (the proxy asks at most once a minute per login it caches)."""
    now = timezone.now()
    resolution = timedelta(seconds=settings.API_TOKEN_LAST_USED_RESOLUTION_S)
    stale = token.last_used_at is None or now - token.last_used_at >= resolution
    if stale or token.last_used_from != client_addr:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_from=client_addr)


@transaction.atomic
def _record_failure(
    *,
    login: str,
    reason: LoginFailure,
    token: ApiToken | None,
    instance: str,
    database: str,
    client_addr: str | None,
    proxy: ServiceAccount,
) -> None:
    count, unrecorded = _count_failure(client_addr)
    limit = settings.QUERY_LOGIN_FAILURES_RECORDED_PER_MINUTE
    if count > limit:
        return
    detail: dict[str, object] = {
        "login": login[:254],
        "reason": str(reason),
        "instance": instance,
        "database": database,
        "client_addr": client_addr,
        "proxy": proxy.name,
    }
    if unrecorded:
        detail["unrecorded_before"] = unrecorded
    if count == limit:
        detail["recording_paused"] = "further failures from this address this minute are only counted"
    record_event(
        action="proxy.login_failed",
        actor=ANONYMOUS,
        channel=Channel.API,
        target=Target("api_token", str(token.pk), str(token)) if token is not None else None,
        detail=detail,
    )


def _keys(client_addr: str | None) -> tuple[str, str]:
    address = client_addr or "local"
    minute = int(timezone.now().timestamp() // 60)
    return f"veil:query-login-failures:{address}:{minute}", f"veil:query-login-unrecorded:{address}"


def _count_failure(client_addr: str | None) -> tuple[int, int]:
    """(this failure's number in the address's minute, failures of the address left unrecorded
    since its last event). A failure past the bound is added to the unrecorded count.

    If the cache cannot be reached the failure counts as the first: the log matters more than the
    bound."""
    minute_key, unrecorded_key = _keys(client_addr)
    try:
        cache.add(minute_key, 0, timeout=120)
        count = int(cache.incr(minute_key))
        if count > settings.QUERY_LOGIN_FAILURES_RECORDED_PER_MINUTE:
            cache.add(unrecorded_key, 0, timeout=_UNRECORDED_KEPT_S)
            cache.incr(unrecorded_key)
            return count, 0
        unrecorded = int(cache.get(unrecorded_key, 0))
        if unrecorded:
            cache.delete(unrecorded_key)
    except Exception:  # any cache backend's error: the event is still written
        logger.warning("query-login failure bound: cache unavailable, recording the failure anyway")
        return 1, 0
    return count, unrecorded
