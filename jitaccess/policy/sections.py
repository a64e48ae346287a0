"""Approval policies as a section of the policy document (found by `masking`'s autodiscovery, so
`masking` exports and applies them without importing `jitaccess`).

Identity: project and title. Order within a project is policy (first match wins).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from identity.models import Role
from jitaccess.models import ApprovalPolicy
from jitaccess.policy.matching import PolicyConditionError, check_request_condition
from jitaccess.policy.services import (
    approval_policies_reorder,
    approval_policy_delete,
    approval_policy_save,
)
from jitaccess.selectors.scopes import access_settings
from masking.models import Project
from masking.policy.document import (
    ApplyContext,
    Fields,
    Reference,
    Section,
    SectionPlan,
    format_duration,
    parse_duration,
    register,
)


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
    )

    def warnings(self, item: Mapping[str, Any]) -> list[str]:
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
            .prefetch_related("approver_roles")
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
        return {
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

    def references(self, item: Mapping[str, Any]) -> list[Reference]:
        return [
            Reference("project", "project", (item["project"],)),
            Reference("approver_roles", "role", tuple(item["approver_roles"])),
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


register(ApprovalPoliciesSection())
