"""Policy versions: every policy write ends in a version; a document is applied as one version.

`policy_change` wraps every policy write (the services in `masking.services.policy`, the approval
policy services in `jitaccess`, and `policy_apply`): it locks the policy head, writes, then stores
the whole policy as the next `PolicyVersion` with its diff and an audit event carrying the
snapshot's SHA-256, all in the caller's transaction. Writes nested in one `policy_change` make
one version. The two-person rule and its approvals live in `masking.services.policy_changes`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from audit.models import ActorType
from audit.services import SYSTEM, Actor, Target, record_event
from masking.models import PolicyHead, PolicyVersion
from masking.policy.diff import Plan, diff_documents, plan_against_live
from masking.policy.document import ApplyContext, export_document
from masking.policy.document import sections as policy_sections

UNATTRIBUTED = Actor(type=ActorType.SYSTEM, id="veil:unattributed", name="Unattributed")
_in_change: ContextVar[bool] = ContextVar("veil_policy_change", default=False)


@dataclass
class VersionOutcome:
    """Filled when the outermost `policy_change` ends: the version it recorded, if anything changed."""

    version: PolicyVersion | None = None


def lock_head() -> PolicyHead:
    """Take the policy head FOR UPDATE (creating it on first use). Every policy change takes it
    before any other lock, so the audit chain head and the decision epoch always come after it."""
    head, _ = PolicyHead.objects.select_for_update().get_or_create(id=1)
    return head


@contextmanager
def policy_change(
    *,
    actor: Actor,
    channel: str,
    message: str,
    approved_by: str = "",
    rollback_of: int | None = None,
) -> Iterator[VersionOutcome]:
    """Run policy writes as one version.

    Locking contract: locks `PolicyHead` first, so call it before writing anything else in the
    transaction. Nested calls join the outermost one, which records the version when it ends. A
    live policy that differs from the last version before the change (an edit made outside these
    services, or the very first change) is recorded first, as its own version, so the new version's
    diff holds only this change.
    """
    outcome = VersionOutcome()
    if _in_change.get():
        yield outcome
        return
    with transaction.atomic():
        head = lock_head()
        _record_unversioned(head)
        token = _in_change.set(True)
        try:
            yield outcome
        finally:
            _in_change.reset(token)
        outcome.version = _record(
            head,
            actor=actor,
            channel=channel,
            message=message,
            approved_by=approved_by,
            rollback_of=rollback_of,
        )


def _record_unversioned(head: PolicyHead) -> None:
    last = PolicyVersion.objects.filter(number=head.version).first() if head.version else None
    if last is None:
        _record(head, actor=SYSTEM, channel="system", message="Policy as found when versioning started")
    else:
        _record(
            head, actor=UNATTRIBUTED, channel="system", message="Changes made outside Veil's policy services"
        )


def _record(
    head: PolicyHead,
    *,
    actor: Actor,
    channel: str,
    message: str,
    approved_by: str = "",
    rollback_of: int | None = None,
) -> PolicyVersion | None:
    """Store the live policy as the next version unless it equals the last one."""
    snapshot = export_document()
    last = PolicyVersion.objects.filter(number=head.version).first() if head.version else None
    if last is not None and last.snapshot == snapshot:
        return None
    plan = diff_documents(last.snapshot if last else {}, snapshot)
    head.version += 1
    head.save(update_fields=["version"])
    version = PolicyVersion.objects.create(
        number=head.version,
        author_type=actor.type,
        author_id=actor.id,
        author_name=actor.name,
        approved_by_name=approved_by,
        channel=channel,
        message=message,
        snapshot=snapshot,
        changes=[c.as_json() for c in plan.changes],
        rollback_of=rollback_of,
    )
    record_event(
        action="policy.version_created",
        actor=actor,
        channel=channel,
        target=Target("policy_version", str(version.number), message[:200]),
        detail={
            "number": version.number,
            "message": message,
            "summary": plan.counts(),
            "approved_by": approved_by,
            "rollback_of": rollback_of,
            "snapshot_sha256": snapshot_digest(snapshot),
        },
    )
    return version


def snapshot_digest(snapshot: Mapping[str, Any]) -> str:
    """SHA-256 of a snapshot's canonical JSON; the audit chain holds it, so a version edited in the
    database no longer matches its event."""
    canonical = json.dumps(snapshot, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def current_version() -> int:
    return PolicyHead.objects.filter(id=1).values_list("version", flat=True).first() or 0


@dataclass
class Applied:
    plan: Plan
    version: PolicyVersion | None


def policy_apply(
    *,
    document: Mapping[str, list[dict[str, Any]]],
    actor: Actor,
    channel: str,
    message: str,
    approved_by: str = "",
    rollback_of: int | None = None,
    context_user: Any = None,
) -> Applied:
    """Make the live policy equal `document` (its sections that are present) as one version.

    Plans inside the lock, so the plan applied is the plan against what is live. Creates and
    updates run in section order (semantic types before the rules that use them, roles before the
    exemptions that name them), then each section's new order, then deletes in reverse section
    order. Each write goes through its owning service, which writes its own audit event.
    """
    if not message.strip():
        raise ValueError("a policy change needs a message")
    with policy_change(
        actor=actor, channel=channel, message=message, approved_by=approved_by, rollback_of=rollback_of
    ) as outcome:
        plan = plan_against_live(document)
        context = ApplyContext(actor=actor, channel=channel, created_by=context_user)
        ordered = [s for s in policy_sections() if s.name in plan.section_plans]
        for sec in ordered:
            sec.apply(plan.section_plans[sec.name], context)
        for sec in reversed(ordered):
            sec.apply_deletes(plan.section_plans[sec.name], context)
    return Applied(plan=plan, version=outcome.version)
