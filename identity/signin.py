"""Password sign-in lockout (django-axes) and the client address every unauthenticated failure is
counted under.

django-axes refuses a username, and separately an address, after LOGIN_FAILURE_LIMIT failures
(settings: AXES_*). Unlocking before the cool-off ends is an administrator's act, so it goes through
`lockout_clear`, which records who unlocked what (`manage.py signin unlock`).
"""

from __future__ import annotations

from axes.utils import reset
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest

from audit.services import Actor, record_event


def client_address(request: HttpRequest) -> str:
    """The address the request came from. Behind TRUSTED_PROXY_COUNT proxies, each appending to
    X-Forwarded-For, it is the entry the outermost proxy added; anything to its left was written by
    the client and is ignored. Used by django-axes (AXES_CLIENT_IP_CALLABLE) and the failure tally."""
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if len(forwarded) >= proxies and forwarded[-proxies]:
            return forwarded[-proxies]
    return str(request.META.get("REMOTE_ADDR", ""))


@transaction.atomic
def lockout_clear(*, username: str = "", address: str = "", actor: Actor, channel: str) -> int:
    """Forget the failed attempts of `username` and/or from `address` (at least one), which lifts
    their lockout. Returns how many attempt records were removed; recorded even when none were."""
    if not (username or address):
        raise ValueError("name a username or an address to unlock")
    removed = 0
    if username:
        removed += reset(username=username)
    if address:
        removed += reset(ip=address)
    record_event(
        action="auth.lockout_cleared",
        actor=actor,
        channel=channel,
        detail={"username": username, "address": address, "attempt_records_removed": removed},
    )
    return removed
