"""Secrets Veil must not run in production without, as Django deploy checks (ids veil.E00x).

`check --deploy` fails on them, and with DEBUG=0 the processes that use the secrets refuse to
start: the WSGI and ASGI applications (sessions, CSRF and the audit signatures) and the Celery
worker and beat (they sign the audit log). Other management commands keep working, so migrations
and type checks run without production secrets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

# Values published in this repository (the settings' default, docker-compose.yml's old default).
PUBLIC_SECRET_KEYS = frozenset(
    {"django-insecure-veil-embedded-default-change-me", "change-me-in-.env-this-is-not-a-secret"}
)
MIN_KEY_LENGTH = 32
KEY_HINT = (
    "Set {name} (or {name}_FILE) to a long random secret of its own, e.g. "
    "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`. DEBUG=1 only on a developer's machine."
)


def _key_problem(value: str) -> str:
    if not value:
        return "is not set"
    if value in PUBLIC_SECRET_KEYS or value.startswith("django-insecure"):
        return "is a public default"
    if len(value) < MIN_KEY_LENGTH:
        return f"is shorter than {MIN_KEY_LENGTH} characters"
    return ""


def secret_problems(names: Iterable[str] = ("SECRET_KEY", "VEIL_SIGNING_KEY")) -> list[CheckMessage]:
    """What is wrong with the named secrets while DEBUG=0 (nothing in development)."""
    if settings.DEBUG:
        return []
    ids = {"SECRET_KEY": "veil.E001", "VEIL_SIGNING_KEY": "veil.E002"}
    errors: list[CheckMessage] = []
    for name in names:
        problem = _key_problem(getattr(settings, name))
        if problem:
            errors.append(
                Error(f"{name} {problem}, and DEBUG=0", hint=KEY_HINT.format(name=name), id=ids[name])
            )
    if "VEIL_SIGNING_KEY" in names and settings.VEIL_SIGNING_KEY == settings.SECRET_KEY:
        errors.append(
            Error(
                "VEIL_SIGNING_KEY equals SECRET_KEY, and DEBUG=0",
                hint="Rotating the session key must not invalidate audit evidence: "
                + KEY_HINT.format(name="VEIL_SIGNING_KEY"),
                id="veil.E003",
            )
        )
    return errors


@register(Tags.security, deploy=True)
def production_secrets(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    return secret_problems()


def refuse_unsafe_production(names: Iterable[str] = ("SECRET_KEY", "VEIL_SIGNING_KEY")) -> None:
    """Raise ImproperlyConfigured naming each variable `secret_problems` finds wrong; called by the
    WSGI and ASGI applications and the Celery processes before they do any work."""
    errors = secret_problems(names)
    if errors:
        raise ImproperlyConfigured("; ".join(f"{e.msg} ({e.id})" for e in errors))
