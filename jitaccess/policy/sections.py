"""Approval policies as a section of the policy document (found by `masking`'s autodiscovery, so
`masking` exports and applies them without importing `jitaccess`).

Identity: project and title. Order within a project is policy (first match wins).

A policy's `stages` (a list of mappings: name, approver_roles, approvals_required, in the order
they are asked) appear only on a policy that has stages, so a policy without them, and a document
or a stored version from before stages, reads and diffs as it always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from identity.models import Role
from jitaccess.models import ApprovalPolicy
from jitaccess.oncall import OnCallProvider, provider_configured
from jitaccess.policy.matching import PolicyConditionError, check_request_condition
from jitaccess.policy.services import (
    STAGE_NAME_MAX_CHARS,
    OnCallRule,
    StageRule,
    approval_policies_reorder,
    approval_policy_delete,
    approval_policy_save,
    check_oncall_rule,
    check_stages,
)
from jitaccess.selectors.scopes import access_settings
from masking.models import Project
from masking.policy.document import (
    ApplyContext,
    Fields,
    Reference,
    Section,
    SectionPlan,
    canonical_mapping,
    format_duration,
    parse_duration,
    register,
)
from masking.services.policy import PolicyError


class ApprovalPoliciesSection(Section):
    name, order, ordered = "approval_policies", 60, True
    fields = (
        "project",
        "title",
        "condition",
        "approver_roles",
        "approvals_required",
        "auto_approve",
        "max_duration",
        "slack_channel",
        "enabled",
        "oncall",
        "stages",
    )

    def warnings(self, item: Mapping[str, Any]) -> list[str]:
        return self._cap_warnings(item) + _oncall_warnings(item)

    def _cap_warnings(self, item: Mapping[str, Any]) -> list[str]:
        """A policy's cap above its project's own is never reached: the project's applies first."""
        if not item["max_duration"]:
            return []
        project = Project.objects.filter(key=item["project"]).first()
        if project is None:
            return []
        cap = access_settings(project).max_duration
        if parse_duration(item["max_duration"]) <= cap:
            return []
        return [
            f"approval policy {item['project']}: {item['title']!r} allows up to {item['max_duration']}, "
            f"but project {item['project']} caps every grant at {format_duration(cap)}: requests it "
            "matches get at most the project's cap"
        ]

    def export(self) -> list[dict[str, Any]]:
        policies = (
            ApprovalPolicy.objects.select_related("project")
            .prefetch_related("approver_roles", "stages__approver_roles")
            .order_by("project__key", "position", "id")
        )
        return [
            {
                "project": p.project.key,
                "title": p.title.strip(),
                "condition": (p.condition or "true").strip(),
                "approver_roles": sorted(r.name for r in p.approver_roles.all()),
                "approvals_required": p.approvals_required,
                "auto_approve": p.auto_approve,
                "max_duration": format_duration(p.max_duration) if p.max_duration else None,
                "slack_channel": p.slack_channel.strip(),
                "enabled": p.enabled,
                "oncall": _export_oncall(p),
                **_export_stages(p),
            }
            for p in policies
        ]

    def key(self, item: Mapping[str, Any]) -> str:
        return f"{item['project']}: {item['title']}"

    def normalize(self, raw: Mapping[str, Any], fields: Fields) -> dict[str, Any]:
        condition = fields.string("condition", "true") or "true"
        try:
            check_request_condition(condition)
        except PolicyConditionError as exc:
            raise fields.error("condition", str(exc)) from None
        item: dict[str, Any] = {
            "project": fields.slug("project"),
            "title": fields.string("title", required=True, max_length=200),
            "condition": condition,
            "approver_roles": fields.names("approver_roles"),
            "approvals_required": fields.integer("approvals_required", 1, minimum=1),
            "auto_approve": fields.boolean("auto_approve", False),
            "max_duration": fields.duration("max_duration"),
            "slack_channel": fields.string("slack_channel", max_length=100),
            "enabled": fields.boolean("enabled", True),
        }
        item["oncall"] = _normalize_oncall(fields, item["max_duration"])
        if stages := _normalize_stages(fields, item):
            item["stages"] = stages
        return item

    def references(self, item: Mapping[str, Any]) -> list[Reference]:
        return [
            Reference("project", "project", (item["project"],)),
            Reference("approver_roles", "role", tuple(item["approver_roles"])),
            Reference(
                "stages",
                "role",
                tuple(sorted({r for s in item.get("stages", []) for r in s["approver_roles"]})),
            ),
        ]

    def project_of(self, item: Mapping[str, Any]) -> str | None:
        return str(item["project"])

    def group_of(self, item: Mapping[str, Any]) -> str:
        return str(item["project"])

    def apply(self, plan: SectionPlan, context: ApplyContext) -> None:
        for old, item in [(None, i) for i in plan.creates] + list(plan.updates):
            project = Project.objects.get(key=item["project"])
            approval_policy_save(
                policy=ApprovalPolicy.objects.get(project=project, title=old["title"]) if old else None,
                project=project,
                title=item["title"],
                condition=item["condition"],
                approver_roles=Role.objects.filter(name__in=item["approver_roles"]),
                approvals_required=item["approvals_required"],
                auto_approve=item["auto_approve"],
                max_duration=parse_duration(item["max_duration"]) if item["max_duration"] else None,
                slack_channel=item["slack_channel"],
                enabled=item["enabled"],
                oncall=_oncall_rule(item["oncall"]),
                stages=[
                    StageRule(
                        stage["name"],
                        tuple(Role.objects.filter(name__in=stage["approver_roles"])),
                        stage["approvals_required"],
                    )
                    for stage in item.get("stages", [])
                ],
                actor=context.actor,
                channel=context.channel,
            )
        for project_key, titles in plan.orders.items():
            project = Project.objects.get(key=project_key)
            ids = dict(ApprovalPolicy.objects.filter(project=project).values_list("title", "pk"))
            wanted = [ids[title.split(": ", 1)[1]] for title in titles]
            leaving = ApprovalPolicy.objects.filter(project=project).exclude(pk__in=wanted)
            approval_policies_reorder(
                project=project,
                order=wanted + list(leaving.order_by("position", "id").values_list("pk", flat=True)),
                actor=context.actor,
                channel=context.channel,
            )

    def apply_deletes(self, plan: SectionPlan, context: ApplyContext) -> None:
        for item in plan.deletes:
            approval_policy_delete(
                policy=ApprovalPolicy.objects.get(project__key=item["project"], title=item["title"]),
                actor=context.actor,
                channel=context.channel,
            )


# An approval policy's on-call schedule is one mapping, absent (null) when it names none, so a
# document or a stored version from before on-call approval reads, and diffs, the same.
ONCALL_FIELDS = ("provider", "schedule", "responder_auto_approve", "responder_max_duration")
ONCALL_KEYS = {  # the service's field -> the document's key
    "oncall_provider": "provider",
    "oncall_schedule_id": "schedule",
    "oncall_responder_auto_approve": "responder_auto_approve",
    "oncall_responder_max_duration": "responder_max_duration",
}


def _export_oncall(policy: ApprovalPolicy) -> dict[str, Any] | None:
    if not policy.oncall_schedule_id:
        return None
    limit = policy.oncall_responder_max_duration
    return canonical_mapping(
        {
            "provider": policy.oncall_provider,
            "schedule": policy.oncall_schedule_id,
            "responder_auto_approve": policy.oncall_responder_auto_approve,
            "responder_max_duration": format_duration(limit) if limit else None,
        }
    )


def _normalize_oncall(fields: Fields, max_duration: str | None) -> dict[str, Any] | None:
    """The `oncall` mapping, checked as `check_oncall_rule` checks a saved one; each refusal names
    its key (`approval_policies[2].oncall.schedule`)."""
    raw = fields.mapping("oncall", default={})
    if not raw:
        return None
    unknown = sorted(set(raw) - set(ONCALL_FIELDS))
    if unknown:
        raise fields.error(f"oncall.{unknown[0]}", f"unknown field (known: {', '.join(ONCALL_FIELDS)})")
    item: dict[str, Any] = {}
    for name in ("provider", "schedule"):
        value = raw.get(name)
        if not isinstance(value, str) or not value.strip():
            raise fields.error(f"oncall.{name}", "is required (a string)")
        item[name] = value.strip()
    item["responder_auto_approve"] = raw.get("responder_auto_approve", False)
    if not isinstance(item["responder_auto_approve"], bool):
        raise fields.error("oncall.responder_auto_approve", "must be true or false")
    item["responder_max_duration"] = None
    if raw.get("responder_max_duration") is not None:
        try:
            item["responder_max_duration"] = format_duration(
                parse_duration(str(raw["responder_max_duration"]))
            )
        except ValueError as exc:
            raise fields.error("oncall.responder_max_duration", str(exc)) from None
    try:
        check_oncall_rule(_oncall_rule(item), parse_duration(max_duration) if max_duration else None)
    except PolicyError as exc:
        raise fields.error(f"oncall.{ONCALL_KEYS[exc.field]}", exc.message) from None
    return canonical_mapping(item)


def _oncall_warnings(item: Mapping[str, Any]) -> list[str]:
    """A schedule Veil has no credential for is never read: nobody counts as on call for it."""
    oncall = item.get("oncall")
    if not oncall or provider_configured(oncall["provider"]):
        return []
    setting = "PAGERDUTY_API_TOKEN" if oncall["provider"] == OnCallProvider.PAGERDUTY else "OPSGENIE_API_KEY"
    return [
        f"approval policy {item['project']}: {item['title']!r} names {oncall['provider']} schedule "
        f"{oncall['schedule']}, but {setting} is not set: nobody counts as on call for it"
    ]


def _export_stages(policy: ApprovalPolicy) -> dict[str, Any]:
    """`{"stages": [...]}` for a policy with stages, `{}` without (see the module docstring). Reads
    the prefetched stages and their roles."""
    stages = sorted(policy.stages.all(), key=lambda stage: stage.position)
    if not stages:
        return {}
    return {
        "stages": [
            {
                "name": stage.name,
                "approver_roles": sorted(role.name for role in stage.approver_roles.all()),
                "approvals_required": stage.approvals_required,
            }
            for stage in stages
        ]
    }


def _normalize_stages(fields: Fields, item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `stages` list, each stage read with its own path (`approval_policies[2].stages[1].name`)
    and the whole checked as `check_stages` checks a saved one; [] when absent or empty."""
    stages: list[dict[str, Any]] = []
    for stage_fields in fields.mappings("stages"):
        stages.append(
            {
                "name": stage_fields.string("name", required=True, max_length=STAGE_NAME_MAX_CHARS),
                "approver_roles": stage_fields.names("approver_roles"),
                "approvals_required": stage_fields.integer("approvals_required", 1, minimum=1),
            }
        )
        stage_fields.done()
    try:
        check_stages(
            [StageRule(s["name"], (), s["approvals_required"]) for s in stages],
            approver_roles=item["approver_roles"],
            approvals_required=item["approvals_required"],
            auto_approve=item["auto_approve"],
        )
    except PolicyError as exc:
        raise fields.error(exc.field, exc.message) from None
    return stages


def _oncall_rule(item: Mapping[str, Any] | None) -> OnCallRule:
    if not item:
        return OnCallRule()
    limit = item.get("responder_max_duration")
    return OnCallRule(
        provider=item["provider"],
        schedule_id=item["schedule"],
        responder_auto_approve=bool(item["responder_auto_approve"]),
        responder_max_duration=parse_duration(limit) if limit else None,
    )


register(ApprovalPoliciesSection())
