"""Small builders for test data. Plain functions: each names what it makes."""

from __future__ import annotations

import itertools
from typing import Any

from guardian.shortcuts import assign_perm

from audit.models import Channel
from identity.models import ServiceAccount, User
from identity.services import token_create
from masking.models import Project

_counter = itertools.count(1)


def make_user(username: str | None = None, **fields: Any) -> User:
    username = username or f"user{next(_counter)}"
    fields.setdefault("email", f"{username}@example.com")
    user = User.objects.create_user(username=username, password="pw-for-tests-only", **fields)
    return user


def make_project(key: str | None = None, **fields: Any) -> Project:
    key = key or f"project-{next(_counter)}"
    return Project.objects.create(key=key, title=fields.pop("title", key.title()), **fields)


def grant_project_perm(user: User, perm: str, project: Project) -> None:
    assign_perm(f"masking.{perm}", user, project)


def make_token(scopes: list[str], account_name: str | None = None) -> tuple[ServiceAccount, str]:
    account, _ = ServiceAccount.objects.get_or_create(name=account_name or f"svc-{next(_counter)}")
    _, plaintext = token_create(
        service_account=account, name="test", scopes=scopes, created_by=None, channel=Channel.CLI
    )
    return account, plaintext


def catalog_payload(
    *,
    instance: str = "prod-pg",
    environment: str = "prod",
    project: str = "shop",
    columns: list[dict] | None = None,
) -> dict[str, Any]:
    return {
        "instance": {"id": instance, "engine": "postgresql", "environment": environment},
        "databases": [
            {
                "name": "shop",
                "project": project,
                "schemas": [
                    {
                        "name": "public",
                        "tables": [
                            {
                                "name": "customers",
                                "columns": columns
                                or [
                                    # Classified: an unclassified column is masked in prod.
                                    {"name": "id", "data_type": "bigint", "classification_level": 1},
                                    {
                                        "name": "email",
                                        "data_type": "text",
                                        "classification_level": 3,
                                    },
                                    {"name": "phone", "data_type": "text"},
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
    }


def make_shop_policy() -> None:
    """prod-pg/shop/public.customers (id classified 1; email classified 3; phone) and a rule masking
    emails."""
    from audit.models import Channel as AuditChannel
    from audit.services import SYSTEM
    from masking.services.catalog import catalog_upsert
    from masking.services.policy import rule_save, semantic_type_save

    payload = catalog_payload()
    catalog_upsert(
        instance_spec=payload["instance"],
        databases=payload["databases"],
        prune=False,
        actor=SYSTEM,
        channel=AuditChannel.CLI,
    )
    email = semantic_type_save(
        key="email", title="Email", algorithm={"type": "email"}, actor=SYSTEM, channel=AuditChannel.CLI
    )
    rule_save(
        title="emails",
        condition='resource.column_name == "email"',
        semantic_type=email,
        actor=SYSTEM,
        channel=AuditChannel.CLI,
    )
