"""Submitting a policy change, and the two-person rule.

`policy_submit` is the one door for changes made by people and pipelines (web pages, the API, the
`policy apply` command): it plans the document against the live policy, checks the author may
change what it touches, and either applies it as one version or, when a project it affects has
the two-person rule on, files it as a pending `PolicyChange`. A pending change has no effect until
another person approves it (`policy_change_approve`), and it is applied only if it still makes the
exact diff the author submitted and is still a valid document; otherwise it is marked superseded
(the note says why) and must be submitted again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.models import ActorType
from audit.services import Actor, Target, record_event
from identity.models import ServiceAccount, User
from identity.services import actor_for
from masking.models import ChangeState, PolicyChange, PolicyVersion
from masking.policy.access import may_administer, needs_second_person
from masking.policy.diff import Plan, plan_against_live
from masking.policy.document import DocumentError, parse_document
from masking.services.versions import lock_head, policy_apply

# Called with the change's ID after a change is filed or decided, once that commits (jitaccess
# registers its Slack messages here, so masking imports nothing of jitaccess). A failing listener
# never undoes the change; listeners must be idempotent and have a periodic catch-up of their own.
policy_change_listeners: list[Callable[[int], None]] = []


class NotAllowed(PermissionError):
    """The person may not make or decide this change; the message says why, for them to read."""


class StalePolicy(ValueError):
    """The policy moved on since the author reviewed the diff; they must review it again."""


class ChangeError(ValueError):
    """A pending change cannot be decided (already decided, or no longer what was reviewed)."""


@dataclass
class Submission:
    status: str  # applied, pending or unchanged
    plan: Plan
    version: PolicyVersion | None = None
    change: PolicyChange | None = None


@transaction.atomic
def policy_submit(
    *,
    document: Mapping[str, list[dict[str, Any]]],
    message: str,
    actor: Actor,
    channel: str,
    author: User | None,
    authorize: bool = True,
    base_version: int | None = None,
    rollback_of: int | None = None,
) -> Submission:
    """Apply a (parsed) document, or hold it for a second person.

    `author` is the person submitting (None for a service account); with `authorize` their
    permission to change what the plan touches is checked here. Callers that authorised the actor
    themselves (a token with `policy:write`, the command line) pass `authorize=False`.
    `base_version`, when given, is the version whose diff the author reviewed: if the policy has
    moved since, `StalePolicy` is raised and nothing is written.
    Locking contract: takes the policy head FOR UPDATE first (through `lock_head`).
    """
    if not message.strip():
        raise ValueError("say what the change is for")
    head = lock_head()
    if base_version is not None and head.version != base_version:
        raise StalePolicy(f"the policy is now at version {head.version}, not {base_version}")
    plan = plan_against_live(document)
    if not plan.has_changes:
        return Submission("unchanged", plan)
    if authorize and not (author and may_administer(author, plan.projects, is_global=plan.is_global)):
        raise NotAllowed(_scope_refusal(plan.projects, plan.is_global))
    if needs_second_person(plan.projects, is_global=plan.is_global):
        change = PolicyChange.objects.create(
            document=dict(document),
            changes=[c.as_json() for c in plan.changes],
            base_version=head.version,
            projects=sorted(plan.projects),
            is_global=plan.is_global,
            message=message.strip(),
            channel=channel,
            author=author,
            author_subject=author.canonical_subject if author else actor.id,
            author_name=actor.name,
            author_type=actor.type,
        )
        record_event(
            action="policy_change.submitted",
            actor=actor,
            channel=channel,
            target=Target("policy_change", str(change.pk), change.message[:200]),
            detail={"summary": plan.counts(), "projects": change.projects, "global": change.is_global},
        )
        _announce(change)
        return Submission("pending", plan, change=change)
    applied = policy_apply(
        document=document,
        actor=actor,
        channel=channel,
        message=message.strip(),
        rollback_of=rollback_of,
        context_user=author,
    )
    return Submission("applied", applied.plan, version=applied.version)


@transaction.atomic
def policy_change_approve(*, change_id: int, approver: User, channel: str) -> PolicyChange:
    """The second person's approval: applies the change as one version, attributed to its author
    and naming the approver. Refused for the author (by IdP subject, whatever the account) and for
    someone who may not change what it touches.

    Locking contract: the policy head, then the change row, both FOR UPDATE.
    """
    lock_head()
    change = PolicyChange.objects.select_for_update().get(pk=change_id)
    if change.state != ChangeState.PENDING:
        raise ChangeError(f"change #{change.pk} is {change.get_state_display().lower()}")
    if approver.canonical_subject == change.author_subject:
        raise NotAllowed("You cannot approve your own policy change: someone else must.")
    if _owns_authoring_account(change, approver):
        raise NotAllowed(
            f"You own {change.author_name}, the service account that submitted this change: "
            "someone else must approve it."
        )
    if not may_administer(approver, change.projects, is_global=change.is_global):
        raise NotAllowed(_scope_refusal(set(change.projects), change.is_global))
    try:
        # Read again as a file is: what the author submitted may name something deleted since,
        # or hold what newer checks refuse; either way it can no longer be applied as reviewed.
        plan = plan_against_live(parse_document(change.document))
    except DocumentError as error:
        _decide(change, ChangeState.SUPERSEDED, approver, channel, f"it is no longer valid ({error})")
        return change
    if [c.as_json() for c in plan.changes] != change.changes:
        _decide(
            change, ChangeState.SUPERSEDED, approver, channel, "the policy changed since it was submitted"
        )
        return change
    author = Actor(type=change.author_type, id=change.author_subject, name=change.author_name)
    applied = policy_apply(
        document=change.document,
        actor=author,
        channel=change.channel,
        message=change.message,
        approved_by=str(approver),
        context_user=change.author,
    )
    change.version = applied.version
    _decide(change, ChangeState.APPLIED, approver, channel, "")
    return change


@transaction.atomic
def policy_change_reject(*, change_id: int, user: User, note: str, channel: str) -> PolicyChange:
    """Reject someone else's pending change (with a note), or withdraw one's own."""
    change = PolicyChange.objects.select_for_update().get(pk=change_id)
    if change.state != ChangeState.PENDING:
        raise ChangeError(f"change #{change.pk} is {change.get_state_display().lower()}")
    if user.canonical_subject == change.author_subject:
        _decide(change, ChangeState.WITHDRAWN, user, channel, note.strip())
        return change
    if not may_administer(user, change.projects, is_global=change.is_global):
        raise NotAllowed(_scope_refusal(set(change.projects), change.is_global))
    if not note.strip():
        raise ChangeError("say why the change is rejected")
    _decide(change, ChangeState.REJECTED, user, channel, note.strip())
    return change


def _decide(change: PolicyChange, state: str, user: User, channel: str, note: str) -> None:
    change.state, change.decided_by, change.decided_at, change.decision_note = (
        state,
        user,
        timezone.now(),
        note,
    )
    change.save(update_fields=["state", "decided_by", "decided_at", "decision_note", "version"])
    record_event(
        action=f"policy_change.{state}",
        actor=actor_for(user),
        channel=channel,
        target=Target("policy_change", str(change.pk), change.message[:200]),
        detail={"note": note, "version": change.version.number if change.version else None},
    )
    _announce(change)


def _announce(change: PolicyChange) -> None:
    for listener in policy_change_listeners:
        transaction.on_commit(functools.partial(listener, change.pk), robust=True)


def _owns_authoring_account(change: PolicyChange, approver: User) -> bool:
    """A pipeline's change (submitted with a service account's token) is its owner's as much as a
    person's is their own: the owner approving it would be one person applying a change alone."""
    if change.author_type != ActorType.SERVICE_ACCOUNT:
        return False
    name = change.author_subject.removeprefix("sa:")  # `identity.services.actor_for`'s id
    account = ServiceAccount.objects.select_related("owner").filter(name=name).first()
    owner = account.owner if account is not None else None
    return owner is not None and owner.canonical_subject == approver.canonical_subject


def _scope_refusal(projects: set[str], is_global: bool) -> str:
    if is_global:
        return (
            "This change touches rules, semantic types or roles, which apply to every project: "
            "it needs policy administration on every project."
        )
    return f"You do not administer policy in: {', '.join(sorted(projects))}."
