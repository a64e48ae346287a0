"""Writes for approval policies: save, delete, reorder. Each is audited and becomes a policy
version (through `masking.services.versions.policy_change`), like every other part of the policy.

The decision epoch is not moved: approval policies route requests, they never change a mask or
unmask answer, so the decision caches stay valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Max

from audit.services import Actor, Target, record_event
from identity.models import Role
from jitaccess.models import ApprovalPolicy, ApprovalStage
from jitaccess.oncall import SCHEDULE_ID, OnCallProvider
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
    oncall: OnCallRule | None = None,
    stages: Sequence[StageRule] = (),
    actor: Actor,
    channel: str,
) -> ApprovalPolicy:
    """Create (policy=None, placed last in its project) or update an approval policy. `oncall`:
    the on-call schedule whose people also approve (None: none). `stages`: the approvers asked one
    stage after the other (none: the policy's own approver roles and quorum are the one stage)."""
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
    oncall = oncall or OnCallRule()
    check_oncall_rule(oncall, max_duration)
    approver_roles = list(approver_roles)
    check_stages(
        stages,
        approver_roles=[role.name for role in approver_roles],
        approvals_required=approvals_required,
        auto_approve=auto_approve,
    )
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
        policy.oncall_provider, policy.oncall_schedule_id = oncall.provider, oncall.schedule_id
        policy.oncall_responder_auto_approve = oncall.responder_auto_approve
        policy.oncall_responder_max_duration = oncall.responder_max_duration
        policy.save()
        policy.approver_roles.set(approver_roles)
        _stages_set(policy, stages)
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
        **({"oncall": oncall_rule_of(policy).as_detail()} if policy.oncall_schedule_id else {}),
        **({"stages": stages} if (stages := [s.as_detail() for s in stage_rules_of(policy)]) else {}),
    }


MAX_STAGES = 4
STAGE_NAME_MAX_CHARS = 100  # ApprovalStage.name


@dataclass(frozen=True)
class StageRule:
    """One stage of an approval policy: its name, approver roles (empty: the people with approve
    permission on the project) and how many of them must approve before the next stage is asked."""

    name: str
    approver_roles: Sequence[Role] = field(default_factory=tuple)
    approvals_required: int = 1

    def as_detail(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "approver_roles": sorted(role.name for role in self.approver_roles),
            "approvals_required": self.approvals_required,
        }


def stage_rules_of(policy: ApprovalPolicy) -> list[StageRule]:
    return [
        StageRule(stage.name, tuple(stage.approver_roles.all()), stage.approvals_required)
        for stage in policy.stages.prefetch_related("approver_roles").order_by("position")
    ]


def check_stages(
    stages: Sequence[StageRule],
    *,
    approver_roles: Sequence[str],
    approvals_required: int,
    auto_approve: bool,
) -> None:
    """Refuse stages that cannot work, naming the field: too many, a stage without a name or a
    name given twice, a quorum below one; and beside them what a policy with stages leaves to its
    stages (its own approver roles and quorum) or cannot have (approval at once). An on-call
    schedule may go with stages: whoever is on call counts at the stage waiting."""
    if not stages:
        return
    if len(stages) > MAX_STAGES:
        raise PolicyError("stages", f"at most {MAX_STAGES} stages")
    seen: set[str] = set()
    for number, stage in enumerate(stages, start=1):
        name = stage.name.strip()
        if not name:
            raise PolicyError("stages", f"stage {number} needs a name (who decides there, e.g. Security)")
        if len(name) > STAGE_NAME_MAX_CHARS:
            raise PolicyError("stages", f"stage {number}'s name is over {STAGE_NAME_MAX_CHARS} characters")
        if name.lower() in seen:
            raise PolicyError("stages", f"two stages are named {name!r}")
        seen.add(name.lower())
        if stage.approvals_required < 1:
            raise PolicyError("stages", f"stage {number} ({name}) needs at least one approval")
    if approver_roles:
        raise PolicyError("approver_roles", "a policy with stages names its approver roles in each stage")
    if approvals_required != 1:
        raise PolicyError("approvals_required", "a policy with stages sets how many approve in each stage")
    if auto_approve:
        raise PolicyError("auto_approve", "a policy with stages is approved stage by stage, not at once")


def _stages_set(policy: ApprovalPolicy, stages: Sequence[StageRule]) -> None:
    """Replace the policy's stages. Requests already made keep the stages they were made with."""
    policy.stages.all().delete()
    for position, rule in enumerate(stages):
        stage = ApprovalStage.objects.create(
            policy=policy,
            position=position,
            name=rule.name.strip(),
            approvals_required=rule.approvals_required,
        )
        stage.approver_roles.set(rule.approver_roles)


@dataclass(frozen=True)
class OnCallRule:
    """An approval policy's on-call schedule: its people also approve; with
    `responder_auto_approve`, the responder on call is approved at once up to the maximum."""

    provider: str = ""
    schedule_id: str = ""
    responder_auto_approve: bool = False
    responder_max_duration: timedelta | None = None

    def as_detail(self) -> dict[str, Any]:
        limit = self.responder_max_duration
        return {
            "provider": self.provider,
            "schedule": self.schedule_id,
            "responder_auto_approve": self.responder_auto_approve,
            "responder_max_duration_s": int(limit.total_seconds()) if limit else None,
        }


def oncall_rule_of(policy: ApprovalPolicy) -> OnCallRule:
    return OnCallRule(
        policy.oncall_provider,
        policy.oncall_schedule_id,
        policy.oncall_responder_auto_approve,
        policy.oncall_responder_max_duration,
    )


def check_oncall_rule(rule: OnCallRule, max_duration: timedelta | None) -> None:
    """Refuse an on-call rule that cannot work, naming the field: a schedule without its provider
    (or the reverse), an ID that is not one, approving the responder at once without a schedule
    or without the shorter maximum that bounds it."""
    if rule.provider and rule.provider not in OnCallProvider.values:
        raise PolicyError("oncall_provider", f"must be one of {', '.join(OnCallProvider.values)}")
    if rule.provider and not rule.schedule_id:
        raise PolicyError("oncall_schedule_id", "name the schedule whose people approve")
    if rule.schedule_id and not rule.provider:
        raise PolicyError("oncall_provider", "name the provider of the schedule (pagerduty or opsgenie)")
    if rule.schedule_id and not SCHEDULE_ID.fullmatch(rule.schedule_id):
        raise PolicyError("oncall_schedule_id", "must be the provider's schedule ID (letters, digits, . _ -)")
    limit = rule.responder_max_duration
    if rule.responder_auto_approve and not rule.schedule_id:
        raise PolicyError("oncall_responder_auto_approve", "needs an on-call schedule")
    if rule.responder_auto_approve and limit is None:
        raise PolicyError("oncall_responder_max_duration", "is required to approve the responder at once")
    if limit is not None and limit <= timedelta(0):
        raise PolicyError("oncall_responder_max_duration", "must be positive")
    if limit is not None and max_duration is not None and limit > max_duration:
        raise PolicyError("oncall_responder_max_duration", "must be at most the policy's max_duration")
