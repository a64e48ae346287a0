"""`manage.py check --database default` (and `migrate`, which runs database checks): people whom
decision requests could not tell apart, so an administrator sees an email collision before it
matters. Decisions already ignore unverified emails (`masking.selectors.resolve_principal`).

`migrate` runs database checks before it migrates, so on a fresh database (`make run`'s first start)
or one a migration behind, the tables this reads are missing or older: then there is nothing to
compare yet, and the check says nothing rather than stopping the migration that would fix it."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning


@register(Tags.database)
def check_principal_collisions(databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not databases or not _migrated():
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


def _migrated() -> bool:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    return not executor.migration_plan(executor.loader.graph.leaf_nodes())
