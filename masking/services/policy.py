"""Policy writes: semantic types, masking rules, roles, exemptions, project settings and grants.

Each function validates before writing (raising `PolicyError` naming the field), writes, records its
audit event with a before/after diff, and moves the decision epoch, all in one transaction: a
change reaches every decision process within `DECISION_EPOCH_MAX_AGE_MS`, or not at all. Every
write except a grant runs inside `policy_change`, so it also becomes a policy version (grants are
not policy: they come and go with requests).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from veil_sdk.algorithms import AlgorithmError
from veil_sdk.algorithms import validate as validate_algorithm

from audit.services import Actor, Target, record_event
from identity.models import Role, ServiceAccount, User
from masking.algorithms import redact, secrets_changed
from masking.decisions.cel import ConditionError, check_condition
from masking.models import (
    Column,
    DecisionEpoch,
    Exemption,
    ExemptionKind,
    MaskingRule,
    Project,
    ProjectPolicySettings,
    SemanticType,
    UnclassifiedAction,
)
from masking.selectors import decision_caches
from masking.services.versions import policy_change


class PolicyError(ValueError):
    """A policy change refused before anything was written; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def bump_epoch(*, policy: bool = False, grants: bool = False) -> None:
    """Move the decision epoch in the caller's transaction.

    Every process re-reads the epochs within `DECISION_EPOCH_MAX_AGE_MS`; this one forgets its
    copy now and again at commit, so its own next decision sees the change."""
    DecisionEpoch.objects.get_or_create(id=1)
    updates: dict[str, Any] = {}
    if policy:
        updates["policy"] = F("policy") + 1
    if grants:
        updates["grants"] = F("grants") + 1
    DecisionEpoch.objects.filter(id=1).update(**updates)
    decision_caches.forget_epochs()
    transaction.on_commit(decision_caches.forget_epochs)


def _check_condition(condition: str, field: str = "condition") -> str:
    try:
        check_condition(condition)
    except ConditionError as exc:
        raise PolicyError(field, str(exc)) from exc
    return condition.strip()


def _snapshot(obj: SemanticType | MaskingRule | None) -> dict[str, Any] | None:
    if obj is None:
        return None
    if isinstance(obj, SemanticType):
        return {
            "key": obj.key,
            "title": obj.title,
            "description": obj.description,
            "algorithm": redact(obj.algorithm),  # the audit log never holds a salt
        }
    return {
        "title": obj.title,
        "condition": obj.condition,
        "semantic_type": obj.semantic_type.key,
        "position": obj.position,
        "enabled": obj.enabled,
    }


@transaction.atomic
def semantic_type_save(
    *, key: str, title: str, algorithm: dict[str, Any], description: str = "", actor: Actor, channel: str
) -> SemanticType:
    """Create or update a semantic type; its algorithm is validated before anything is saved."""
    try:
        validate_algorithm(algorithm)
    except AlgorithmError as exc:
        raise PolicyError("algorithm", str(exc)) from exc
    if not title.strip():
        raise PolicyError("title", "is required")
    with policy_change(actor=actor, channel=channel, message=f"Semantic type {key} saved"):
        existing = SemanticType.objects.select_for_update().filter(key=key).first()
        before = _snapshot(existing)
        changed_secrets = secrets_changed(existing.algorithm if existing else None, algorithm)
        semantic_type = existing or SemanticType(key=key)
        semantic_type.title, semantic_type.algorithm, semantic_type.description = (
            title.strip(),
            algorithm,
            description.strip(),
        )
        semantic_type.save()
        record_event(
            action="semantic_type.updated" if existing else "semantic_type.created",
            actor=actor,
            channel=channel,
            target=Target("semantic_type", key, title),
            detail={
                "before": before,
                "after": _snapshot(semantic_type),
                **({"secrets_changed": changed_secrets} if existing and changed_secrets else {}),
            },
        )
        bump_epoch(policy=True)
    return semantic_type


@transaction.atomic
def semantic_type_delete(*, semantic_type: SemanticType, actor: Actor, channel: str) -> None:
    """Delete a semantic type no rule uses. Columns that named it lose it (their classification
    still masks them by default); the audit event lists how many."""
    users = list(MaskingRule.objects.filter(semantic_type=semantic_type).values_list("title", flat=True))
    if users:
        raise PolicyError("semantic_type", f"is used by rule(s) {', '.join(sorted(users))}")
    with policy_change(actor=actor, channel=channel, message=f"Semantic type {semantic_type.key} deleted"):
        before = _snapshot(semantic_type)
        columns = Column.objects.filter(semantic_type=semantic_type).count()
        semantic_type.delete()
        record_event(
            action="semantic_type.deleted",
            actor=actor,
            channel=channel,
            target=Target(
                "semantic_type", before["key"] if before else "", before["title"] if before else ""
            ),
            detail={"before": before, "after": None, "columns_unassigned": columns},
        )
        bump_epoch(policy=True)


@transaction.atomic
def rule_save(
    *,
    rule: MaskingRule | None = None,
    title: str,
    condition: str,
    semantic_type: SemanticType,
    position: int | None = None,
    enabled: bool = True,
    actor: Actor,
    channel: str,
) -> MaskingRule:
    """Create (rule=None) or update a masking rule. The condition must compile and name only
    known variables; a new rule goes last unless a position is given."""
    if not title.strip():
        raise PolicyError("title", "is required")
    if not condition.strip():
        raise PolicyError("condition", "is required (a rule that matches everything is `true`)")
    condition = _check_condition(condition)
    namesakes = MaskingRule.objects.filter(title=title.strip())
    if rule is not None and rule.pk:
        namesakes = namesakes.exclude(pk=rule.pk)
    if namesakes.exists():
        raise PolicyError("title", "another rule has this title (titles identify rules in policy files)")
    with policy_change(actor=actor, channel=channel, message=f"Rule {title.strip()!r} saved"):
        before = _snapshot(MaskingRule.objects.get(pk=rule.pk)) if rule is not None and rule.pk else None
        if rule is None:
            last = MaskingRule.objects.order_by("-position").values_list("position", flat=True).first()
            rule = MaskingRule(position=(last + 1) if last is not None else 0)
        if position is not None and position != rule.position:
            # Insert before whatever holds that position: first match wins, so order is policy.
            MaskingRule.objects.filter(position__gte=position).exclude(pk=rule.pk).update(
                position=F("position") + 1
            )
            rule.position = position
        rule.title, rule.condition, rule.semantic_type, rule.enabled = (
            title.strip(),
            condition,
            semantic_type,
            enabled,
        )
        rule.save()
        record_event(
            action="rule.updated" if before else "rule.created",
            actor=actor,
            channel=channel,
            target=Target("masking_rule", str(rule.pk), rule.title),
            detail={"before": before, "after": _snapshot(rule)},
        )
        bump_epoch(policy=True)
    return rule


@transaction.atomic
def rule_delete(*, rule: MaskingRule, actor: Actor, channel: str) -> None:
    with policy_change(actor=actor, channel=channel, message=f"Rule {rule.title!r} deleted"):
        before = _snapshot(rule)
        rule_id = rule.pk
        rule.delete()
        record_event(
            action="rule.deleted",
            actor=actor,
            channel=channel,
            target=Target("masking_rule", str(rule_id), before["title"] if before else ""),
            detail={"before": before, "after": None},
        )
        bump_epoch(policy=True)


@transaction.atomic
def rules_reorder(*, order: list[int], actor: Actor, channel: str) -> None:
    """Set the evaluation order of every rule (first match wins). `order` names each rule once."""
    with policy_change(actor=actor, channel=channel, message="Rules reordered"):
        rules = {r.pk: r for r in MaskingRule.objects.select_for_update()}
        if sorted(order) != sorted(rules):
            raise PolicyError("order", "must name every rule exactly once")
        before = [rules[pk].title for pk in sorted(rules, key=lambda pk: (rules[pk].position, pk))]
        for position, pk in enumerate(order):
            if rules[pk].position != position:
                MaskingRule.objects.filter(pk=pk).update(position=position)
        record_event(
            action="rule.reordered",
            actor=actor,
            channel=channel,
            target=Target("masking_rule", "order", "rule order"),
            detail={"before": before, "after": [rules[pk].title for pk in order]},
        )
        bump_epoch(policy=True)


def _exemption_members(
    users: Iterable[User],
    groups: Iterable[Group],
    roles: Iterable[Role],
    service_accounts: Iterable[ServiceAccount],
) -> dict[str, list[Any]]:
    """The members by relation name, read once (they may be querysets or generators)."""
    members: dict[str, list[Any]] = {
        "users": list(users),
        "groups": list(groups),
        "roles": list(roles),
        "service_accounts": list(service_accounts),
    }
    if not any(members.values()):
        raise PolicyError("members", "name at least one user, group, role or service account")
    return members


def _set_exemption_members(exemption: Exemption, members: dict[str, list[Any]]) -> None:
    for relation, values in members.items():
        getattr(exemption, relation).set(values)


def _check_exemption_reason(project: Project, reason: str, exclude: int | None = None) -> str:
    """The reason is required and, within a project, names the exemption in policy files."""
    if not reason.strip():
        raise PolicyError("reason", "is required")
    clash = Exemption.objects.filter(
        kind=ExemptionKind.EXEMPTION, project=project, revoked_at__isnull=True, reason=reason.strip()
    )
    if exclude is not None:
        clash = clash.exclude(pk=exclude)
    if clash.exists():
        raise PolicyError("reason", f"another exemption of {project.key} has this reason; make it specific")
    return reason.strip()


@transaction.atomic
def exemption_create(
    *,
    project: Project,
    reason: str,
    condition: str = "",
    users: Iterable[User] = (),
    groups: Iterable[Group] = (),
    roles: Iterable[Role] = (),
    service_accounts: Iterable[ServiceAccount] = (),
    expires_at: datetime | None = None,
    created_by: User | None,
    actor: Actor,
    channel: str,
) -> Exemption:
    """A standing exemption: its members see unmasked values of the matching columns of `project`."""
    members = _exemption_members(users, groups, roles, service_accounts)
    if expires_at is not None and expires_at <= timezone.now():
        raise PolicyError("expires_at", "must be in the future")
    condition = _check_condition(condition)
    with policy_change(actor=actor, channel=channel, message=f"Exemption in {project.key} created"):
        exemption = Exemption.objects.create(
            kind=ExemptionKind.EXEMPTION,
            project=project,
            condition=condition,
            reason=_check_exemption_reason(project, reason),
            expires_at=expires_at,
            created_by=created_by,
        )
        _set_exemption_members(exemption, members)
        record_event(
            action="exemption.created",
            actor=actor,
            channel=channel,
            target=Target("exemption", str(exemption.pk), exemption.reason[:100]),
            project=project.key,
            detail=_exemption_detail(exemption),
        )
        bump_epoch(policy=True)
    return exemption


@transaction.atomic
def exemption_update(
    *,
    exemption: Exemption,
    reason: str,
    condition: str,
    users: Iterable[User] = (),
    groups: Iterable[Group] = (),
    roles: Iterable[Role] = (),
    service_accounts: Iterable[ServiceAccount] = (),
    expires_at: datetime | None,
    actor: Actor,
    channel: str,
) -> Exemption:
    """Change a standing exemption's scope, members, expiry or reason. An expiry in the past ends
    it now (like revoking, but kept as the date it ended)."""
    if exemption.kind != ExemptionKind.EXEMPTION:
        raise PolicyError("exemption", "grants come from requests and cannot be edited")
    members = _exemption_members(users, groups, roles, service_accounts)
    condition = _check_condition(condition)
    with policy_change(actor=actor, channel=channel, message=f"Exemption in {exemption.project.key} updated"):
        locked = Exemption.objects.select_for_update().select_related("project").get(pk=exemption.pk)
        if locked.revoked_at is not None:
            raise PolicyError("exemption", "was revoked; create a new one")
        before = _exemption_detail(locked)
        locked.reason = _check_exemption_reason(locked.project, reason, exclude=locked.pk)
        locked.condition, locked.expires_at = condition, expires_at
        locked.save(update_fields=["reason", "condition", "expires_at"])
        _set_exemption_members(locked, members)
        record_event(
            action="exemption.updated",
            actor=actor,
            channel=channel,
            target=Target("exemption", str(locked.pk), locked.reason[:100]),
            project=locked.project.key,
            detail={"before": before, "after": _exemption_detail(locked)},
        )
        bump_epoch(policy=True)
    return locked


@transaction.atomic
def exemption_revoke(*, exemption: Exemption, actor: Actor, channel: str) -> Exemption:
    """End an exemption or a grant now; the next decision anywhere masks again. Idempotent.

    Revoking a standing exemption is a policy change (a version); revoking a grant is not."""
    if exemption.kind == ExemptionKind.GRANT:
        return _revoke(exemption, actor, channel)
    with policy_change(actor=actor, channel=channel, message=f"Exemption #{exemption.pk} revoked"):
        return _revoke(exemption, actor, channel)


def _revoke(exemption: Exemption, actor: Actor, channel: str) -> Exemption:
    locked = Exemption.objects.select_for_update().get(pk=exemption.pk)
    if locked.revoked_at is not None:
        return locked
    locked.revoked_at = timezone.now()
    locked.save(update_fields=["revoked_at"])
    record_event(
        action=f"{locked.kind}.revoked",
        actor=actor,
        channel=channel,
        target=Target(locked.kind, str(locked.pk), locked.reason[:100]),
        project=locked.project.key,
        detail={"request": locked.request_ref},
    )
    bump_epoch(policy=locked.kind == ExemptionKind.EXEMPTION, grants=locked.kind == ExemptionKind.GRANT)
    return locked


@transaction.atomic
def project_policy_settings_save(
    *,
    project: Project,
    two_person_rule: bool,
    actor: Actor,
    channel: str,
    unclassified_default: str | None = None,
    unclassified_environments: Mapping[str, str] | None = None,
) -> None:
    """Save a project's policy settings: the two-person rule, and how its unclassified columns are
    answered (`unclassified_default`, blank for Veil's default, and per-environment overrides;
    None keeps either). Recorded with what changed; moves the policy epoch when decisions change."""
    default = _check_unclassified_default(unclassified_default)
    environments = _check_unclassified_environments(unclassified_environments)
    with policy_change(actor=actor, channel=channel, message=f"Policy settings of {project.key} saved"):
        settings, _ = ProjectPolicySettings.objects.select_for_update().get_or_create(project=project)
        before = {
            "two_person_rule": settings.two_person_rule,
            "unclassified_default": settings.unclassified_default,
            "unclassified_environments": settings.unclassified_environments,
        }
        after = {
            "two_person_rule": two_person_rule,
            "unclassified_default": before["unclassified_default"] if default is None else default,
            "unclassified_environments": (
                before["unclassified_environments"] if environments is None else environments
            ),
        }
        changed = [name for name in after if after[name] != before[name]]
        if not changed:
            return
        for name in changed:
            setattr(settings, name, after[name])
        settings.save(update_fields=changed)
        detail: dict[str, Any] = {"two_person_rule": two_person_rule}
        if changed != ["two_person_rule"]:
            detail = {"before": {n: before[n] for n in changed}, "after": {n: after[n] for n in changed}}
        record_event(
            action="project.policy_settings_updated",
            actor=actor,
            channel=channel,
            target=Target("project", project.key, project.title),
            project=project.key,
            detail=detail,
        )
        if changed != ["two_person_rule"]:
            bump_epoch(policy=True)


def _check_unclassified_default(value: str | None) -> str | None:
    if value is not None and value not in ("", *UnclassifiedAction.values):
        raise PolicyError("unclassified_default", "must be mask, unmask or blank (Veil's default)")
    return value


def _check_unclassified_environments(value: Mapping[str, str] | None) -> dict[str, str] | None:
    """Environment name -> mask/unmask, sorted by environment so equal settings compare equal."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise PolicyError("unclassified_environments", "must map environment names to mask or unmask")
    for environment, action in value.items():
        if not isinstance(environment, str) or not re.fullmatch(r"[-a-zA-Z0-9_]{1,64}", environment):
            raise PolicyError("unclassified_environments", f"{environment!r} is not an environment name")
        if action not in UnclassifiedAction.values:
            raise PolicyError("unclassified_environments", f"{environment}: must be mask or unmask")
    return dict(sorted(value.items()))


def grant_condition(
    *,
    instance: str,
    database: str,
    schema: str | None = None,
    table: str | None = None,
    columns: Iterable[str] = (),
) -> str:
    """The CEL condition for a grant's scope: a database, a table, or chosen columns of a table."""
    parts = [
        f"resource.instance_id == {_cel_string(instance)}",
        f"resource.database_name == {_cel_string(database)}",
    ]
    if schema is not None:
        parts.append(f"resource.schema_name == {_cel_string(schema)}")
    if table is not None:
        parts.append(f"resource.table_name == {_cel_string(table)}")
    column_list = sorted(set(columns))
    if column_list:
        parts.append(f"resource.column_name in [{', '.join(_cel_string(c) for c in column_list)}]")
    return " && ".join(parts)


def _cel_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@transaction.atomic
def grant_create(
    *,
    project: Project,
    principal: User | ServiceAccount,
    condition: str,
    expires_at: datetime,
    reason: str,
    request_ref: str,
    actor: Actor,
    channel: str,
    starts_at: datetime | None = None,
) -> Exemption:
    """A just-in-time grant: unmask for one principal until `expires_at`, from `starts_at` when
    it extends a grant still running (else at once). Called by jitaccess."""
    if expires_at <= timezone.now():
        raise PolicyError("expires_at", "must be in the future")
    if starts_at is not None and starts_at >= expires_at:
        raise PolicyError("starts_at", "must be before expires_at")
    key = f"user:{principal.pk}" if isinstance(principal, User) else f"sa:{principal.name}"
    grant = Exemption.objects.create(
        kind=ExemptionKind.GRANT,
        project=project,
        condition=_check_condition(condition),
        reason=reason,
        principal_key=key,
        starts_at=starts_at,
        expires_at=expires_at,
        request_ref=request_ref,
        created_by=principal if isinstance(principal, User) else None,
    )
    record_event(
        action="grant.created",
        actor=actor,
        channel=channel,
        target=Target("grant", str(grant.pk), request_ref),
        project=project.key,
        detail={
            "principal": key,
            "condition": grant.condition,
            **({"starts_at": starts_at} if starts_at is not None else {}),
            "expires_at": expires_at,
            "request": request_ref,
        },
    )
    bump_epoch(grants=True)
    return grant


def _exemption_detail(exemption: Exemption) -> dict[str, Any]:
    """What an audit event says about an exemption: scope, expiry and every member."""
    return {
        "condition": exemption.condition,
        "expires_at": exemption.expires_at,
        "revoked_at": exemption.revoked_at,
        "members": {
            "users": [u.canonical_subject for u in exemption.users.all()],
            "groups": sorted(exemption.groups.values_list("name", flat=True)),
            "roles": sorted(exemption.roles.values_list("name", flat=True)),
            "service_accounts": sorted(exemption.service_accounts.values_list("name", flat=True)),
        },
    }
