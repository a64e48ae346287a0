"""Sign-in auditing. Django's auth signals are the one hook every login path (password, OIDC,
admin) goes through, so sign-ins are recorded here rather than in each view."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from audit.models import Channel
from audit.services import ANONYMOUS, record_event
from identity.models import User
from identity.services import actor_for


def _method(request: HttpRequest | None) -> str:
    return "oidc" if request is not None and request.path.startswith("/oidc/") else "password"


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
def record_failed_sign_in(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    # The username tried is recorded (never the password: Django already masks it in credentials).
    record_event(
        action="auth.sign_in_failed",
        actor=ANONYMOUS,
        channel=Channel.WEB,
        detail={"username": str(credentials.get("username", ""))[:150], "method": _method(request)},
    )
