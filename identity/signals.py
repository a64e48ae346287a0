"""Sign-in auditing. Django's auth signals are the one hook every login path (password, OIDC,
admin) goes through, so sign-ins are recorded here rather than in each view.

A sign-in is chained at once (the person is known). A failed sign-in or a lockout is caused by
whoever can reach the login page, so it is counted (`audit.failures`) and chained once per window.
"""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from audit.failures import failure_count
from audit.models import Channel
from audit.services import record_event
from identity.models import User
from identity.services import actor_for
from identity.signin import client_address


def _method(request: HttpRequest | None) -> str:
    return "oidc" if request is not None and request.path.startswith("/oidc/") else "password"


def _failure_reason(request: HttpRequest | None) -> str:
    """How the sign-in was tried, and why an OIDC one was refused when Veil refused it."""
    refusal = getattr(request, "veil_oidc_refusal", None)
    return f"oidc: {refusal}" if refusal else _method(request)


@receiver(user_logged_in)
def record_sign_in(sender: Any, request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    record_event(
        action="auth.sign_in",
        actor=actor_for(user),
        channel=Channel.WEB,
        detail={
            "method": _method(request),
            "groups": sorted(user.groups.values_list("name", flat=True)),
        },
    )


@receiver(user_logged_out)
def record_sign_out(sender: Any, request: HttpRequest | None, user: User | None, **kwargs: Any) -> None:
    if user is not None:
        record_event(action="auth.sign_out", actor=actor_for(user), channel=Channel.WEB)


@receiver(user_login_failed)
def count_failed_sign_in(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    # The username tried is kept (never the password: Django already masks it in credentials).
    failure_count(
        action="auth.sign_in_failed",
        channel=Channel.WEB,
        source=client_address(request) if request is not None else "",
        username=str(credentials.get("username") or ""),
        reason=_failure_reason(request),
    )


@receiver(user_locked_out)
def count_lockout(
    sender: Any, request: HttpRequest, username: str | None, ip_address: str, **kwargs: Any
) -> None:
    """django-axes refused a sign-in because the username or the address is locked out."""
    failure_count(
        action="auth.locked_out", channel=Channel.WEB, source=ip_address, username=username or "", reason=""
    )
