"""Directory sync (SCIM 2.0) writes: people and groups as the company IdP provisions them.

The SCIM protocol (routing, filters, list responses, error bodies) is django-scim2's; the adapters in
`identity.scim` turn its resources into the plain values these functions take. Every change is
written here, in one transaction with its audit event, attributed to the service account whose
`scim` token made the call.

A person the IdP provisions is an IdP person: their email is the IdP's (so verified), and their
OIDC subject is the SCIM `externalId` (Okta's is the user id its ID tokens carry as `sub`; Entra
ID's, mapped to objectId, is the `oid` its ID tokens carry, which sign-in reads with
`OIDC_SUBJECT_CLAIM=oid`), or the `userName` when the IdP sends no externalId. The subject is set
once, when the person has none: a later externalId is kept as `scim_external_id` but never
re-points who signs in as this person.

Deactivation must take effect at once, and the apps that hold a person's access sit above
identity: they register handlers here at start-up (`deactivation_handlers`: jitaccess ends the
person's requests and grants; `membership_handlers`: masking moves the decision epoch so every
process re-reads principals), called inside the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from audit.models import Channel
from audit.services import Actor, Target, record_event
from identity.models import DirectoryGroup, ServiceAccount, User
from identity.services import actor_for

CHANNEL = Channel.API

# Called with (person, actor, channel) in the deactivation's transaction.
deactivation_handlers: list[Callable[[User, Actor, str], None]] = []
# Called (no arguments) in the transaction of any change to who is in which group or who is active.
membership_handlers: list[Callable[[], None]] = []


class DirectoryError(ValueError):
    """A SCIM change refused before anything was written, with the SCIM error it answers
    (RFC 7644 3.12): `status` and `scim_type` (invalidValue, uniqueness, mutability ...)."""

    def __init__(self, detail: str, *, status: int = 400, scim_type: str = "invalidValue") -> None:
        super().__init__(detail)
        self.detail, self.status, self.scim_type = detail, status, scim_type


@dataclass(frozen=True)
class PersonFields:
    """What the IdP says about a person, as Veil keeps it."""

    username: str
    external_id: str = ""
    given_name: str = ""
    family_name: str = ""
    display_name: str = ""
    email: str = ""
    active: bool = True


def person_fields(user: User) -> PersonFields:
    return PersonFields(
        username=user.username,
        external_id=user.scim_external_id,
        given_name=user.first_name,
        family_name=user.last_name,
        display_name=user.display_name,
        email=user.email,
        active=user.is_active,
    )


def _person_target(user: User) -> Target:
    return Target("user", str(user.pk), f"{user} ({user.username})")


def _check_person(fields: PersonFields, *, user: User | None) -> None:
    if not fields.username.strip():
        raise DirectoryError("userName is required")
    if len(fields.username) > 150:
        raise DirectoryError("userName: at most 150 characters")
    taken = User.objects.filter(username=fields.username)
    if user is not None:
        taken = taken.exclude(pk=user.pk)
    if taken.exists():
        raise DirectoryError(f"userName {fields.username!r} is taken", status=409, scim_type="uniqueness")


def _subject_for(fields: PersonFields, user: User | None) -> str:
    subject = (fields.external_id or fields.username)[:255]
    others = User.objects.filter(oidc_subject=subject)
    if user is not None:
        others = others.exclude(pk=user.pk)
    if others.exists():
        raise DirectoryError(
            f"another person already signs in as subject {subject!r}", status=409, scim_type="uniqueness"
        )
    return subject


def _apply(user: User, fields: PersonFields) -> None:
    user.username = fields.username
    user.scim_external_id = fields.external_id[:255]
    user.first_name = fields.given_name[:150]
    user.last_name = fields.family_name[:150]
    user.display_name = fields.display_name[:255]
    user.email = fields.email
    user.email_verified = bool(fields.email)  # the IdP's own record of the person
    user.is_active = fields.active


@transaction.atomic
def person_create(*, fields: PersonFields, account: ServiceAccount) -> User:
    """Add a person the IdP provisions: no password (they sign in through the IdP), no privileges."""
    _check_person(fields, user=None)
    user = User(oidc_subject=_subject_for(fields, None))
    _apply(user, fields)
    user.set_unusable_password()
    user.save()
    record_event(
        action="directory.user_created",
        actor=actor_for(account),
        channel=CHANNEL,
        target=_person_target(user),
        detail={**asdict(fields), "subject": user.oidc_subject},
    )
    return user


@transaction.atomic
def person_update(*, user: User, fields: PersonFields, account: ServiceAccount) -> User:
    """Make a person match the IdP (SCIM PUT, or PATCH once its operations are applied).

    Locking contract: the person's row is read FOR UPDATE. Turning `active` off ends their
    sessions, their requests and grants (`deactivation_handlers`) in this transaction; recorded as
    directory.user_deactivated (or _reactivated, _updated) with before and after."""
    locked = User.objects.select_for_update().get(pk=user.pk)
    _check_person(fields, user=locked)
    before = asdict(person_fields(locked))
    after = asdict(fields)
    changed = [k for k in after if after[k] != before[k]]
    if not locked.oidc_subject:
        locked.oidc_subject = _subject_for(fields, locked)
        changed.append("subject")
    if not changed:
        return locked
    was_active = locked.is_active
    _apply(locked, fields)
    locked.save()
    if was_active and not fields.active:
        action = "directory.user_deactivated"
    elif fields.active and not was_active:
        action = "directory.user_reactivated"
    else:
        action = "directory.user_updated"
    actor = actor_for(account)
    record_event(
        action=action,
        actor=actor,
        channel=CHANNEL,
        target=_person_target(locked),
        detail={
            "before": {k: before[k] for k in changed if k in before},
            "after": {k: after[k] for k in changed if k in after},
            **({"subject": locked.oidc_subject} if "subject" in changed else {}),
        },
    )
    if was_active != fields.active:
        if not fields.active:
            sessions_end(locked)
            for handler in deactivation_handlers:
                handler(locked, actor, CHANNEL)
        _memberships_changed()
    return locked


def sessions_end(user: User) -> int:
    """Delete the person's web sessions (database sessions; each is decoded to find its owner, so
    this reads every live session: fine for something the IdP does now and then)."""
    ended = []
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.get_decoded().get("_auth_user_id") == str(user.pk):
            ended.append(session.session_key)
    Session.objects.filter(session_key__in=ended).delete()
    return len(ended)


def _memberships_changed() -> None:
    for handler in membership_handlers:
        handler()


def _people(scim_ids: Iterable[str]) -> list[User]:
    """The people these SCIM ids name; any id that names no one is refused (nothing is written)."""
    wanted: dict[uuid.UUID, str] = {}
    for raw in scim_ids:
        try:
            wanted[uuid.UUID(str(raw))] = str(raw)
        except ValueError:
            raise DirectoryError(f"members: {raw!r} is not a user id of this service") from None
    found = {u.scim_id: u for u in User.objects.filter(scim_id__in=list(wanted))}
    missing = [raw for key, raw in wanted.items() if key not in found]
    if missing:
        raise DirectoryError(f"members: no user with id {', '.join(missing)}")
    return list(found.values())


def _group_target(group: Group) -> Target:
    return Target("group", str(group.pk), group.name)


def _check_group_name(name: str, *, group: Group | None) -> None:
    if not name.strip():
        raise DirectoryError("displayName is required")
    if len(name) > 150:
        raise DirectoryError("displayName: at most 150 characters")
    others = Group.objects.filter(name=name)
    other = (others.exclude(pk=group.pk) if group is not None else others).first()
    if other is not None and (group is not None or DirectoryGroup.objects.filter(group=other).exists()):
        raise DirectoryError(f"a group named {name!r} exists", status=409, scim_type="uniqueness")


@transaction.atomic
def group_create(
    *, name: str, external_id: str, members: Iterable[str], account: ServiceAccount
) -> DirectoryGroup:
    """Add a group the IdP manages. A group of that name that the IdP's groups claim made (so with
    no directory link yet) is taken over, keeping the project permissions given to it."""
    _check_group_name(name, group=None)
    people = _people(members)
    group, _ = Group.objects.get_or_create(name=name)
    directory = DirectoryGroup.objects.create(group=group, scim_external_id=external_id[:255])
    before = _member_subjects(group)
    group.user_set.set(people)
    record_event(
        action="directory.group_created",
        actor=actor_for(account),
        channel=CHANNEL,
        target=_group_target(group),
        detail={"external_id": external_id, "members_before": before, "members": _member_subjects(group)},
    )
    _memberships_changed()
    return directory


def _member_subjects(group: Group) -> list[str]:
    return sorted(u.canonical_subject for u in group.user_set.all())


@transaction.atomic
def group_update(
    *,
    directory: DirectoryGroup,
    account: ServiceAccount,
    name: str | None = None,
    external_id: str | None = None,
    members: Iterable[str] | None = None,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
) -> DirectoryGroup:
    """Rename a group or change its members: `members` replaces them (SCIM PUT, PATCH replace),
    `add` and `remove` change some (PATCH add/remove). Membership decides roles and project
    permissions, so the change counts from the next decision (`membership_handlers`).

    Locking contract: the group's row is read FOR UPDATE, so two changes of one group serialise."""
    locked = DirectoryGroup.objects.select_for_update().select_related("group").get(pk=directory.pk)
    group = locked.group
    if name is not None:
        _check_group_name(name, group=group)
    replacing = _people(members) if members is not None else None
    adding, removing = _people(add), _people(remove)
    before = {"name": group.name, "external_id": locked.scim_external_id, "members": _member_subjects(group)}
    if name is not None and name != group.name:
        group.name = name
        group.save(update_fields=["name"])
    if external_id is not None and external_id != locked.scim_external_id:
        locked.scim_external_id = external_id[:255]
        locked.save(update_fields=["scim_external_id"])
    if replacing is not None:
        group.user_set.set(replacing)
    group.user_set.add(*adding)
    group.user_set.remove(*removing)
    after = {"name": group.name, "external_id": locked.scim_external_id, "members": _member_subjects(group)}
    if after == before:
        return locked
    detail: dict[str, Any] = {
        k: {"before": before[k], "after": after[k]} for k in ("name", "external_id") if before[k] != after[k]
    }
    if before["members"] != after["members"]:
        detail["members_added"] = sorted(set(after["members"]) - set(before["members"]))
        detail["members_removed"] = sorted(set(before["members"]) - set(after["members"]))
    record_event(
        action="directory.group_updated",
        actor=actor_for(account),
        channel=CHANNEL,
        target=_group_target(group),
        detail=detail,
    )
    if before["members"] != after["members"]:
        _memberships_changed()
    return locked


@transaction.atomic
def group_unlink(*, directory: DirectoryGroup, account: ServiceAccount) -> None:
    """The IdP deleted the group: it loses its members and its directory link. The `Group` itself
    stays, with the project permissions an administrator gave it, so that nothing they configured
    is lost silently; with no members it grants nothing."""
    locked = DirectoryGroup.objects.select_for_update().select_related("group").get(pk=directory.pk)
    group = locked.group
    members = _member_subjects(group)
    group.user_set.clear()
    locked.delete()
    record_event(
        action="directory.group_deleted",
        actor=actor_for(account),
        channel=CHANNEL,
        target=_group_target(group),
        detail={"members_removed": members},
    )
    _memberships_changed()
