"""Writes for approval policies: save, delete, reorder. Each is audited and becomes a policy
version (through `masking.services.versions.policy_change`), like every other part of the policy.

The decision epoch is not moved: approval policies route requests, they never change a mask or
unmask answer, so the decision caches stay valid.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Max

from audit.services import Actor, Target, record_event
from identity.models import Role
from jitaccess.models import ApprovalPolicy
from jitaccess.policy.matching import PolicyConditionError, check_request_condition
from masking.models import Project
from masking.services.policy import PolicyError
from masking.services.versions import policy_change


@transaction.atomic
def approval_policy_save(
    *,
    policy: ApprovalPolicy | None = None,
    project: Project,
    title: str,
    condition: str,
    approver_roles: Iterable[Role] = (),
    approvals_required: int = 1,
    auto_approve: bool = False,
    max_duration: timedelta | None = None,
    slack_channel: str = "",
    enabled: bool = True,
    actor: Actor,
    channel: str,
) -> ApprovalPolicy:
    """Create (policy=None, placed last in its project) or update an approval policy."""
    title, condition = title.strip(), (condition.strip() or "true")
    if not title:
        raise PolicyError("title", "is required")
    try:
        check_request_condition(condition)
    except PolicyConditionError as exc:
        raise PolicyError("condition", str(exc)) from exc
    if approvals_required < 1 and not auto_approve:
        raise PolicyError("approvals_required", "at least one approval (or auto-approve)")
    if max_duration is not None and max_duration <= timedelta(0):
        raise PolicyError("max_duration", "must be positive")
    clash = ApprovalPolicy.objects.filter(project=project, title=title)
    if policy is not None and policy.pk:
        clash = clash.exclude(pk=policy.pk)
    if clash.exists():
        raise PolicyError("title", f"another approval policy of {project.key} has this title")
    with policy_change(actor=actor, channel=channel, message=f"Approval policy {title!r} saved"):
        before = (
            _detail(ApprovalPolicy.objects.get(pk=policy.pk)) if policy is not None and policy.pk else None
        )
        if policy is None:
            last = ApprovalPolicy.objects.filter(project=project).aggregate(m=Max("position"))["m"]
            policy = ApprovalPolicy(project=project, position=(last + 1) if last is not None else 0)
        policy.project, policy.title, policy.condition = project, title, condition
        policy.approvals_required, policy.auto_approve = max(approvals_required, 1), auto_approve
        policy.max_duration, policy.slack_channel, policy.enabled = (
            max_duration,
            slack_channel.strip(),
            enabled,
        )
        policy.save()
        policy.approver_roles.set(list(approver_roles))
        record_event(
            action="approval_policy.updated" if before else "approval_policy.created",
            actor=actor,
            channel=channel,
            target=Target("approval_policy", str(policy.pk), title),
            project=project.key,
            detail={"before": before, "after": _detail(policy)},
        )
    return policy


@transaction.atomic
def approval_policy_delete(*, policy: ApprovalPolicy, actor: Actor, channel: str) -> None:
    """Delete an approval policy; requests it routed keep their snapshot of it."""
    with policy_change(actor=actor, channel=channel, message=f"Approval policy {policy.title!r} deleted"):
        before = _detail(policy)
        policy_id = policy.pk
        policy.delete()
        record_event(
            action="approval_policy.deleted",
            actor=actor,
            channel=channel,
            target=Target("approval_policy", str(policy_id), before["title"]),
            project=before["project"],
            detail={"before": before, "after": None},
        )


@transaction.atomic
def approval_policies_reorder(*, project: Project, order: list[int], actor: Actor, channel: str) -> None:
    """Set the order a project's approval policies are tried in (first match wins)."""
    with policy_change(actor=actor, channel=channel, message=f"Approval policies of {project.key} reordered"):
        policies = {p.pk: p for p in ApprovalPolicy.objects.select_for_update().filter(project=project)}
        if sorted(order) != sorted(policies):
            raise PolicyError("order", f"must name every approval policy of {project.key} exactly once")
        for position, pk in enumerate(order):
            if policies[pk].position != position:
                ApprovalPolicy.objects.filter(pk=pk).update(position=position)
        record_event(
            action="approval_policy.reordered",
            actor=actor,
            channel=channel,
            target=Target("project", project.key, project.title),
            project=project.key,
            detail={"after": [policies[pk].title for pk in order]},
        )


def _detail(policy: ApprovalPolicy) -> dict[str, Any]:
    return {
        "project": policy.project.key,
        "title": policy.title,
        "condition": policy.condition,
        "approver_roles": sorted(policy.approver_roles.values_list("name", flat=True)),
        "approvals_required": policy.approvals_required,
        "auto_approve": policy.auto_approve,
        "max_duration_s": int(policy.max_duration.total_seconds()) if policy.max_duration else None,
        "slack_channel": policy.slack_channel,
        "enabled": policy.enabled,
    }
