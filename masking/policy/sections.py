"""The parts of the policy document that `masking` owns: project settings, semantic types, roles,
masking rules and standing exemptions. Found by `policy_document.sections()` (autodiscovery).

Identity within a file: a semantic type by its key, a role by its name, a rule by its title, an
exemption by its project and reason. Renaming one of those is a delete and a create.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.contrib.auth.models import Group
from django.db.models import Q
from django.utils import timezone
from veil_sdk.algorithms import AlgorithmError
from veil_sdk.algorithms import validate as validate_algorithm

from identity.models import Role, ServiceAccount, User
from masking.decisions.cel import ConditionError, check_condition
from masking.models import (
    Exemption,
    ExemptionKind,
    MaskingRule,
    Project,
    ProjectPolicySettings,
    SemanticType,
    UnclassifiedAction,
)
from masking.policy.document import (
    ApplyContext,
    Fields,
    Reference,
    Section,
    SectionPlan,
    canonical_mapping,
    format_timestamp,
    register,
)
from masking.services.policy import (
    exemption_create,
    exemption_revoke,
    exemption_update,
    project_policy_settings_save,
    rule_delete,
    rule_save,
    rules_reorder,
    semantic_type_delete,
    semantic_type_save,
)
from masking.services.roles import role_delete, role_save

MEMBER_FIELDS = ("users", "groups", "roles", "service_accounts")


def _users(names: list[str]) -> list[User]:
    return list(User.objects.filter(username__in=names))


def _groups(names: list[str]) -> list[Group]:
    """IdP groups named by the policy; one nobody has signed in with yet is created empty."""
    return [Group.objects.get_or_create(name=name)[0] for name in names]


def _condition(fields: Fields, name: str = "condition", *, required: bool) -> str:
    condition = fields.string(name, required=required)
    try:
        check_condition(condition)
    except ConditionError as exc:
        raise fields.error(name, str(exc)) from None
    return condition


class ProjectsSection(Section):
    """Project policy settings: the two-person rule and how unclassified columns are answered
    (`unclassified`: mask, unmask or blank for Veil's default; `unclassified_environments`: per
    environment). Only projects with a setting away from the default are listed, so a project
    created by a catalog push does not change the document."""

    name, order = "projects", 10
    fields = ("key", "two_person_rule", "unclassified", "unclassified_environments")

    def export(self) -> list[dict[str, Any]]:
        rows = (
            ProjectPolicySettings.objects.filter(
                Q(two_person_rule=True) | ~Q(unclassified_default="") | ~Q(unclassified_environments={})
            )
            .order_by("project__key")
            .values_list(
                "project__key", "two_person_rule", "unclassified_default", "unclassified_environments"
            )
        )
        return [
            {
                "key": key,
                "two_person_rule": two_person,
                "unclassified": default,
                "unclassified_environments": dict(sorted((environments or {}).items())),
            }
            for key, two_person, default, environments in rows
        ]

    def key(self, item: Mapping[str, Any]) -> str:
        return str(item["key"])

    def normalize(self, raw: Mapping[str, Any], fields: Fields) -> dict[str, Any]:
        environments = fields.mapping("unclassified_environments", default={})
        item: dict[str, Any] = {
            "key": fields.slug("key"),
            "two_person_rule": fields.boolean("two_person_rule", False),
            "unclassified": fields.string("unclassified"),
            "unclassified_environments": environments,
        }
        if item["unclassified"] not in ("", *UnclassifiedAction.values):
            raise fields.error("unclassified", "must be mask, unmask or empty (Veil's default)")
        for environment, action in environments.items():
            if not re.fullmatch(r"[-a-zA-Z0-9_]{1,64}", environment):
                raise fields.error("unclassified_environments", f"{environment!r} is not an environment name")
            if action not in UnclassifiedAction.values:
                raise fields.error("unclassified_environments", f"{environment}: must be mask or unmask")
        return item

    def prepare(
        self, target: list[dict[str, Any]], current: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        return [item for item in target if _project_settings_set(item)], []

    def references(self, item: Mapping[str, Any]) -> list[Reference]:
        return [Reference("key", "project", (item["key"],))]

    def project_of(self, item: Mapping[str, Any]) -> str | None:
        return str(item["key"])

    def apply(self, plan: SectionPlan, context: ApplyContext) -> None:
        for item in plan.creates + [new for _, new in plan.updates]:
            project_policy_settings_save(
                project=Project.objects.get(key=item["key"]),
                two_person_rule=item["two_person_rule"],
                unclassified_default=item["unclassified"],
                unclassified_environments=item["unclassified_environments"],
                actor=context.actor,
                channel=context.channel,
            )

    def apply_deletes(self, plan: SectionPlan, context: ApplyContext) -> None:
        for item in plan.deletes:
            project_policy_settings_save(
                project=Project.objects.get(key=item["key"]),
                two_person_rule=False,
                unclassified_default="",
                unclassified_environments={},
                actor=context.actor,
                channel=context.channel,
            )


def _project_settings_set(item: Mapping[str, Any]) -> bool:
    """Whether a project's settings differ from the defaults (only those are listed)."""
    return bool(item["two_person_rule"] or item["unclassified"] or item["unclassified_environments"])


class SemanticTypesSection(Section):
    name, order, provides = "semantic_types", 20, "semantic_type"
    fields = ("key", "title", "description", "algorithm")

    def export(self) -> list[dict[str, Any]]:
        return [
            {
                "key": st.key,
                "title": st.title.strip(),
                "description": st.description.strip(),
                "algorithm": canonical_mapping(st.algorithm),
            }
            for st in SemanticType.objects.order_by("key")
        ]

    def key(self, item: Mapping[str, Any]) -> str:
        return str(item["key"])

    def normalize(self, raw: Mapping[str, Any], fields: Fields) -> dict[str, Any]:
        item: dict[str, Any] = {
            "key": fields.slug("key"),
            "title": fields.string("title", required=True, max_length=200),
            "description": fields.string("description"),
            "algorithm": fields.mapping("algorithm"),
        }
        try:
            validate_algorithm(item["algorithm"])
        except AlgorithmError as exc:
            raise fields.error("algorithm", str(exc)) from None
        return item

    def apply(self, plan: SectionPlan, context: ApplyContext) -> None:
        for item in plan.creates + [new for _, new in plan.updates]:
            semantic_type_save(
                key=item["key"],
                title=item["title"],
                description=item["description"],
                algorithm=item["algorithm"],
                actor=context.actor,
                channel=context.channel,
            )

    def apply_deletes(self, plan: SectionPlan, context: ApplyContext) -> None:
        for item in plan.deletes:
            semantic_type_delete(
                semantic_type=SemanticType.objects.get(key=item["key"]),
                actor=context.actor,
                channel=context.channel,
            )


class RolesSection(Section):
    name, order, provides = "roles", 30, "role"
    fields = ("name", "description", "users", "groups", "service_accounts")

    def export(self) -> list[dict[str, Any]]:
        roles = Role.objects.order_by("name").prefetch_related("users", "groups", "service_accounts")
        return [
            {
                "name": role.name,
                "description": role.description.strip(),
                "users": sorted(u.username for u in role.users.all()),
                "groups": sorted(g.name for g in role.groups.all()),
                "service_accounts": sorted(sa.name for sa in role.service_accounts.all()),
            }
            for role in roles
        ]

    def key(self, item: Mapping[str, Any]) -> str:
        return str(item["name"])

    def normalize(self, raw: Mapping[str, Any], fields: Fields) -> dict[str, Any]:
        return {
            "name": fields.slug("name"),
            "description": fields.string("description", max_length=500),
            "users": fields.names("users"),
            "groups": fields.names("groups"),
            "service_accounts": fields.names("service_accounts"),
        }

    def references(self, item: Mapping[str, Any]) -> list[Reference]:
        return [
            Reference("users", "user", tuple(item["users"])),
            Reference("groups", "group", tuple(item["groups"])),
            Reference("service_accounts", "service_account", tuple(item["service_accounts"])),
        ]

    def apply(self, plan: SectionPlan, context: ApplyContext) -> None:
        for item in plan.creates + [new for _, new in plan.updates]:
            role_save(
                name=item["name"],
                description=item["description"],
                users=_users(item["users"]),
                groups=_groups(item["groups"]),
                service_accounts=ServiceAccount.objects.filter(name__in=item["service_accounts"]),
                actor=context.actor,
                channel=context.channel,
            )

    def apply_deletes(self, plan: SectionPlan, context: ApplyContext) -> None:
        for item in plan.deletes:
            role_delete(
                role=Role.objects.get(name=item["name"]), actor=context.actor, channel=context.channel
            )


class RulesSection(Section):
    """Masking rules, in evaluation order (first match wins), disabled ones included."""

    name, order, ordered = "rules", 40, True
    fields = ("title", "condition", "semantic_type", "enabled")

    def export(self) -> list[dict[str, Any]]:
        return [
            {
                "title": rule.title.strip(),
                "condition": rule.condition.strip(),
                "semantic_type": rule.semantic_type.key,
                "enabled": rule.enabled,
            }
            for rule in MaskingRule.objects.select_related("semantic_type").order_by("position", "id")
        ]

    def key(self, item: Mapping[str, Any]) -> str:
        return str(item["title"])

    def normalize(self, raw: Mapping[str, Any], fields: Fields) -> dict[str, Any]:
        return {
            "title": fields.string("title", required=True, max_length=200),
            "condition": _condition(fields, required=True),
            "semantic_type": fields.slug("semantic_type"),
            "enabled": fields.boolean("enabled", True),
        }

    def references(self, item: Mapping[str, Any]) -> list[Reference]:
        return [Reference("semantic_type", "semantic_type", (item["semantic_type"],))]

    def apply(self, plan: SectionPlan, context: ApplyContext) -> None:
        for old, item in [(None, i) for i in plan.creates] + list(plan.updates):
            rule_save(
                rule=MaskingRule.objects.get(title=old["title"]) if old else None,
                title=item["title"],
                condition=item["condition"],
                semantic_type=SemanticType.objects.get(key=item["semantic_type"]),
                enabled=item["enabled"],
                actor=context.actor,
                channel=context.channel,
            )
        if "" in plan.orders:
            ids = dict(MaskingRule.objects.values_list("title", "pk"))
            wanted = [ids[title] for title in plan.orders[""]]
            # Rules this plan deletes are still there: keep them last until they go.
            leaving = MaskingRule.objects.exclude(pk__in=wanted).order_by("position", "id")
            rules_reorder(
                order=wanted + list(leaving.values_list("pk", flat=True)),
                actor=context.actor,
                channel=context.channel,
            )

    def apply_deletes(self, plan: SectionPlan, context: ApplyContext) -> None:
        for item in plan.deletes:
            rule_delete(
                rule=MaskingRule.objects.get(title=item["title"]),
                actor=context.actor,
                channel=context.channel,
            )


class ExemptionsSection(Section):
    """Standing exemptions that are not revoked (expired ones too, until a file drops them).
    Grants are not policy and never appear."""

    name, order = "exemptions", 50
    fields = ("project", "reason", "condition", *MEMBER_FIELDS, "expires_at")

    def export(self) -> list[dict[str, Any]]:
        exemptions = (
            Exemption.objects.filter(kind=ExemptionKind.EXEMPTION, revoked_at__isnull=True)
            .select_related("project")
            .prefetch_related("users", "groups", "roles", "service_accounts")
        )
        items = [
            {
                "project": e.project.key,
                "reason": e.reason.strip(),
                "condition": e.condition.strip(),
                "users": sorted(u.username for u in e.users.all()),
                "groups": sorted(g.name for g in e.groups.all()),
                "roles": sorted(r.name for r in e.roles.all()),
                "service_accounts": sorted(sa.name for sa in e.service_accounts.all()),
                "expires_at": format_timestamp(e.expires_at) if e.expires_at else None,
            }
            for e in exemptions
        ]
        return sorted(items, key=lambda i: (i["project"], i["reason"]))

    def key(self, item: Mapping[str, Any]) -> str:
        return f"{item['project']}: {item['reason']}"

    def normalize(self, raw: Mapping[str, Any], fields: Fields) -> dict[str, Any]:
        item = {
            "project": fields.slug("project"),
            "reason": fields.string("reason", required=True),
            "condition": _condition(fields, required=False),
            **{name: fields.names(name) for name in MEMBER_FIELDS},
            "expires_at": fields.timestamp("expires_at"),
        }
        if not any(item[name] for name in MEMBER_FIELDS):
            raise fields.error("users", "name at least one user, group, role or service account")
        return item

    def prepare(
        self, target: list[dict[str, Any]], current: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """An exemption that has already expired is not created (it would unmask nothing)."""
        live = {self.key(item) for item in current}
        now = format_timestamp(timezone.now())
        kept, warnings = [], []
        for item in target:
            if item["expires_at"] and item["expires_at"] <= now and self.key(item) not in live:
                warnings.append(f"exemption {self.key(item)!r} expired at {item['expires_at']}; not created")
            else:
                kept.append(item)
        return kept, warnings

    def references(self, item: Mapping[str, Any]) -> list[Reference]:
        kinds = {"users": "user", "groups": "group", "roles": "role", "service_accounts": "service_account"}
        return [Reference("project", "project", (item["project"],))] + [
            Reference(name, kind, tuple(item[name])) for name, kind in kinds.items()
        ]

    def project_of(self, item: Mapping[str, Any]) -> str | None:
        return str(item["project"])

    def apply(self, plan: SectionPlan, context: ApplyContext) -> None:
        for item in plan.creates:
            exemption_create(
                project=Project.objects.get(key=item["project"]),
                reason=item["reason"],
                created_by=context.created_by,
                actor=context.actor,
                channel=context.channel,
                **self._values(item),
            )
        for old, item in plan.updates:
            exemption_update(
                exemption=self._find(old),
                reason=item["reason"],
                actor=context.actor,
                channel=context.channel,
                **self._values(item),
            )

    def apply_deletes(self, plan: SectionPlan, context: ApplyContext) -> None:
        for item in plan.deletes:
            exemption_revoke(exemption=self._find(item), actor=context.actor, channel=context.channel)

    @staticmethod
    def _find(item: Mapping[str, Any]) -> Exemption:
        return Exemption.objects.get(
            kind=ExemptionKind.EXEMPTION,
            revoked_at__isnull=True,
            project__key=item["project"],
            reason=item["reason"],
        )

    @staticmethod
    def _values(item: Mapping[str, Any]) -> dict[str, Any]:
        expires = item["expires_at"]
        return {
            "condition": item["condition"],
            "users": _users(item["users"]),
            "groups": _groups(item["groups"]),
            "roles": list(Role.objects.filter(name__in=item["roles"])),
            "service_accounts": list(ServiceAccount.objects.filter(name__in=item["service_accounts"])),
            "expires_at": datetime.fromisoformat(expires.replace("Z", "+00:00")) if expires else None,
        }


for _section in (
    ProjectsSection(),
    SemanticTypesSection(),
    RolesSection(),
    RulesSection(),
    ExemptionsSection(),
):
    register(_section)
