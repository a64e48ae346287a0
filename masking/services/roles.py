"""Role writes. Roles belong to `identity`, but whom they hold decides whom exemptions cover and
who approves, so their membership is policy: versioned and audited like the rest of it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction

from audit.services import Actor, Target, record_event
from identity.models import Role, ServiceAccount, User
from masking.services.policy import bump_epoch
from masking.services.versions import policy_change


@transaction.atomic
def role_save(
    *,
    name: str,
    description: str = "",
    users: Iterable[User] = (),
    groups: Iterable[Group] = (),
    service_accounts: Iterable[ServiceAccount] = (),
    actor: Actor,
    channel: str,
) -> Role:
    """Create or update a role and set its members. Roles decide whom exemptions cover and who
    approves, so a membership change is a policy change."""
    with policy_change(actor=actor, channel=channel, message=f"Role {name} saved"):
        role = Role.objects.select_for_update().filter(name=name).first()
        before = _role_detail(role) if role else None
        role = role or Role(name=name)
        role.description = description.strip()
        role.save()
        role.users.set(list(users))
        role.groups.set(list(groups))
        role.service_accounts.set(list(service_accounts))
        record_event(
            action="role.updated" if before else "role.created",
            actor=actor,
            channel=channel,
            target=Target("role", name, name),
            detail={"before": before, "after": _role_detail(role)},
        )
        bump_epoch(policy=True)
    return role


@transaction.atomic
def role_delete(*, role: Role, actor: Actor, channel: str) -> None:
    """Delete a role; exemptions and approval policies that named it stop naming it."""
    with policy_change(actor=actor, channel=channel, message=f"Role {role.name} deleted"):
        before = _role_detail(role)
        role.delete()
        record_event(
            action="role.deleted",
            actor=actor,
            channel=channel,
            target=Target("role", before["name"], before["name"]),
            detail={"before": before, "after": None},
        )
        bump_epoch(policy=True)


def _role_detail(role: Role) -> dict[str, Any]:
    return {
        "name": role.name,
        "description": role.description,
        "users": sorted(u.canonical_subject for u in role.users.all()),
        "groups": sorted(role.groups.values_list("name", flat=True)),
        "service_accounts": sorted(role.service_accounts.values_list("name", flat=True)),
    }
