"""Who holds standing unmask access in a project, and when each last used it: what a campaign reviews.

Read-only. A holding is one principal's one way in: a member named by a live standing exemption of
the project, or a member of a role that such an exemption (or the project's break-glass settings)
names. Roles are global, so a role's members are reviewed in every project whose exemptions name
it, and removing one removes them from the role everywhere; the item's label says which of this
project's exemptions name it.

Last use comes from the unmask decision records: an exemption is used when a recorded unmask cites
it. A holding of a person or a service account counts only their own use; a group's or a role's
counts its current members' use. Break-glass is not an exemption and is never proposed as unused:
it exists for rare emergencies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import Group
from django.db.models import Q
from django.utils import timezone

from audit.models import DecisionRecord
from identity.models import Role, ServiceAccount, User
from jitaccess.models import ProjectAccessSettings
from jitaccess.reviews.models import ItemKind
from masking.models import Exemption, ExemptionKind, Project

Principal = tuple[str, str]  # as decision records name them: ("user", "<pk>") or ("service_account", name)


@dataclass(frozen=True)
class Holding:
    """One principal's one way to unmasked values in a project (what an item reviews)."""

    kind: str
    exemption: Exemption | None
    role: Role | None
    member_key: str
    member_label: str
    access_label: str
    exemption_ids: frozenset[int]  # whose use counts as this holding's use
    since_exists: (
        datetime | None
    )  # the oldest of those exemptions: no proposal before it is `unused_days` old
    principals: frozenset[Principal]
    breakglass_only: bool = False


def member_key(member: User | Group | Role | ServiceAccount) -> str:
    kind = {User: "user", Group: "group", Role: "role", ServiceAccount: "service_account"}[type(member)]
    return f"{kind}:{member.pk}"


def member_label(member: User | Group | Role | ServiceAccount) -> str:
    if isinstance(member, User):
        shown = f"{member} ({member.username})" if str(member) != member.username else member.username
        return shown if member.is_active else f"{shown}, deactivated"
    if isinstance(member, Group):
        return f"IdP group {member.name}"
    if isinstance(member, Role):
        return f"role {member.name}"
    return f"service account {member.name}"


def exemption_label(exemption: Exemption) -> str:
    reason = exemption.reason if len(exemption.reason) <= 80 else exemption.reason[:79] + "…"
    return f"exemption “{reason}” (#{exemption.pk})"


def live_exemptions(project: Project) -> list[Exemption]:
    """The project's standing exemptions in force now (not revoked, not expired), oldest first."""
    now = timezone.now()
    return list(
        Exemption.objects.filter(kind=ExemptionKind.EXEMPTION, project=project, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .prefetch_related("users", "groups", "roles", "service_accounts")
        .order_by("created_at", "pk")
    )


def holdings_of(project: Project) -> list[Holding]:
    """Every holding of standing unmask access in `project`, in a stable order."""
    exemptions = live_exemptions(project)
    holdings: list[Holding] = []
    naming: dict[int, list[Exemption]] = defaultdict(list)  # role pk -> exemptions naming it
    roles: dict[int, Role] = {}
    for exemption in exemptions:
        label = exemption_label(exemption)
        for member in _members(exemption):
            holdings.append(
                Holding(
                    kind=ItemKind.EXEMPTION_MEMBER,
                    exemption=exemption,
                    role=None,
                    member_key=member_key(member),
                    member_label=member_label(member),
                    access_label=label,
                    exemption_ids=frozenset({exemption.pk}),
                    since_exists=exemption.created_at,
                    principals=principals_of(member),
                )
            )
        for role in exemption.roles.all():
            naming[role.pk].append(exemption)
            roles[role.pk] = role
    access = ProjectAccessSettings.objects.filter(project=project).first()
    breakglass = list(access.breakglass_roles.all()) if access is not None else []
    roles |= {role.pk: role for role in breakglass}
    breakglass_ids = {role.pk for role in breakglass}
    for role in sorted(roles.values(), key=lambda r: r.name):
        named_by = naming.get(role.pk, [])
        uses = [exemption_label(e) for e in named_by] + (["break-glass"] if role.pk in breakglass_ids else [])
        label = f"role {role.name}, which gives {', '.join(uses)}"
        for member in _role_members(role):
            holdings.append(
                Holding(
                    kind=ItemKind.ROLE_MEMBER,
                    exemption=None,
                    role=role,
                    member_key=member_key(member),
                    member_label=member_label(member),
                    access_label=label[:500],
                    exemption_ids=frozenset(e.pk for e in named_by),
                    since_exists=min((e.created_at for e in named_by), default=None),
                    principals=principals_of(member),
                    breakglass_only=not named_by,
                )
            )
    return holdings


def _members(exemption: Exemption) -> Iterator[User | Group | Role | ServiceAccount]:
    yield from sorted(exemption.users.all(), key=lambda u: u.username)
    yield from sorted(exemption.groups.all(), key=lambda g: g.name)
    yield from sorted(exemption.roles.all(), key=lambda r: r.name)
    yield from sorted(exemption.service_accounts.all(), key=lambda s: s.name)


def _role_members(role: Role) -> Iterator[User | Group | ServiceAccount]:
    yield from role.users.order_by("username")
    yield from role.groups.order_by("name")
    yield from role.service_accounts.order_by("name")


def principals_of(member: User | Group | Role | ServiceAccount) -> frozenset[Principal]:
    """The principals whose recorded unmasks count as this member's use (current members for a
    group or a role, as the decision path resolves them now)."""
    if isinstance(member, User):
        return frozenset({("user", str(member.pk))})
    if isinstance(member, ServiceAccount):
        return frozenset({("service_account", member.name)})
    if isinstance(member, Group):
        return frozenset(("user", str(pk)) for pk in member.user_set.values_list("pk", flat=True))
    users = User.objects.filter(Q(veil_roles=member) | Q(groups__veil_roles=member)).values_list(
        "pk", flat=True
    )
    accounts = member.service_accounts.values_list("name", flat=True)
    return frozenset({("user", str(pk)) for pk in users} | {("service_account", name) for name in accounts})


def people_whose_access(key: str) -> set[int]:
    """The people an item's access belongs to, who must not review it: the person; a group's or a
    role's members; a service account's owner."""
    kind, _, pk = key.partition(":")
    if kind == "user":
        return {int(pk)}
    if kind == "group":
        return set(User.objects.filter(groups__pk=pk).values_list("pk", flat=True))
    if kind == "role":
        return set(
            User.objects.filter(Q(veil_roles__pk=pk) | Q(groups__veil_roles__pk=pk)).values_list(
                "pk", flat=True
            )
        )
    owner = ServiceAccount.objects.filter(pk=pk).values_list("owner_id", flat=True).first()
    return {owner} if owner is not None else set()


def last_unmasks(exemption_ids: Iterable[int], since: datetime) -> dict[tuple[int, Principal], datetime]:
    """When each principal last had an unmask answered through each of these exemptions, since
    `since`. Reads the decision records of the period once (as `masking.policy.insights` does): their
    only index is the time, and a campaign opens a few times a year."""
    wanted = set(exemption_ids)
    last: dict[tuple[int, Principal], datetime] = {}
    if not wanted:
        return last
    records = DecisionRecord.objects.filter(recorded_at__gte=since).values_list(
        "principal_type", "principal_id", "recorded_at", "unmasked"
    )
    for principal_type, principal_id, recorded_at, unmasked in records.iterator(chunk_size=2000):
        for entry in unmasked:
            if entry.get("reason") == "exemption" and entry.get("id") in wanted:
                key = (int(entry["id"]), (principal_type, principal_id))
                if key not in last or last[key] < recorded_at:
                    last[key] = recorded_at
    return last


def last_unmask_of(holding: Holding, uses: dict[tuple[int, Principal], datetime]) -> datetime | None:
    found = [
        uses[(exemption_id, principal)]
        for exemption_id in holding.exemption_ids
        for principal in holding.principals
        if (exemption_id, principal) in uses
    ]
    return max(found, default=None)
