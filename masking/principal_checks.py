"""`manage.py check --database default` (and `migrate`, which runs database checks): people whom
decision requests could not tell apart, so an administrator sees an email collision before it
matters. Decisions already ignore unverified emails (`masking.selectors.resolve_principal`)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning


@register(Tags.database)
def check_principal_collisions(databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not databases:
        return []
    from masking.selectors import principal_collisions  # models are not loaded at import time

    return [
        CheckWarning(
            f"Decisions could confuse active users: {c.summary}.",
            hint="Deactivate the account that is not the person's, or correct its email in the admin site. "
            "Decision requests match only verified emails, a verified one before a username.",
            id="masking.W001",
        )
        for c in principal_collisions()
    ]
