"""The diff of two policy documents, and the plan that takes the live policy to a file's.

A plan lists creates, updates (with field diffs), deletes and reorders per section, what it
touches (projects, or every project for global sections), and per section what to write
(`SectionPlan`), which `masking.services.versions.policy_apply` hands to each section to apply.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from identity.models import User
from masking.policy.document import (
    CREATE,
    DELETE,
    REORDER,
    UPDATE,
    DocumentError,
    Fields,
    Section,
    SectionPlan,
    canonical_document,
    export_document,
    sections,
)
from masking.policy.warnings import plan_warnings


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Change:
    section: str
    action: str
    key: str
    fields: tuple[FieldChange, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "action": self.action,
            "key": self.key,
            "fields": [{"field": f.field, "before": f.before, "after": f.after} for f in self.fields],
        }


@dataclass
class Plan:
    """The changes that take a current document to a target one, with what they touch."""

    changes: list[Change]
    warnings: list[str] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)
    section_plans: dict[str, SectionPlan] = field(default_factory=dict)
    projects: set[str] = field(default_factory=set)
    is_global: bool = False

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def counts(self) -> dict[str, int]:
        counts = {CREATE: 0, UPDATE: 0, DELETE: 0, REORDER: 0}
        for change in self.changes:
            counts[change.action] += 1
        return counts

    def summary(self) -> str:
        if not self.changes:
            return "No changes."
        c = {CREATE: 0, UPDATE: 0, DELETE: 0, REORDER: 0}
        for change in self.changes:  # as the diff shows them: settings are updated, never created
            c[UPDATE if change.section in SETTINGS_SECTIONS else change.action] += 1
        parts = [f"{c[CREATE]} to create", f"{c[UPDATE]} to update", f"{c[DELETE]} to delete"]
        if c[REORDER]:
            parts.append(f"{c[REORDER]} to reorder")
        return "Plan: " + ", ".join(parts) + "."

    def as_json(self) -> dict[str, Any]:
        return {
            "has_changes": self.has_changes,
            "summary": self.counts(),
            "changes": [c.as_json() for c in self.changes],
            "warnings": self.warnings,
            "unmanaged_sections": self.unmanaged,
            "projects": sorted(self.projects),
            "global": self.is_global,
        }

    def text(self) -> str:
        """What `policy plan` prints: one line per change, indented field diffs."""
        signs = {CREATE: "+", UPDATE: "~", DELETE: "-", REORDER: "↕"}
        lines: list[str] = []
        current = None
        for change in self.changes:
            if change.section != current:
                current = change.section
                lines.append(f"{current}:")
            lines.append(f"  {signs[change.action]} {change.action} {change.key}")
            for f in change.fields:
                if change.action == UPDATE or change.action == REORDER:
                    lines.append(f"      {f.field}: {_short(f.before)} -> {_short(f.after)}")
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"note: section {s} is not in the file; left as it is" for s in self.unmanaged]
        lines.append(self.summary())
        return "\n".join(lines)


def _short(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _indexed(sec: Section, items: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Items by key. Stored snapshots never hold duplicates, but a diff must not crash if one does."""
    index: dict[str, dict[str, Any]] = {}
    for item in items:
        key = sec.key(item)
        while key in index:
            key += " (again)"
        index[key] = item
    return index


def diff_documents(
    current: Mapping[str, list[dict[str, Any]]], target: Mapping[str, list[dict[str, Any]]]
) -> Plan:
    """Compare two documents section by section; sections missing from `target` are left alone."""
    plan = Plan(changes=[])
    current, target = canonical_document(current), canonical_document(target)
    for sec in sections():
        if sec.name not in target:
            if sec.name in current:
                plan.unmanaged.append(sec.name)
            continue
        live = list(current.get(sec.name, []))
        wanted, warnings = sec.prepare(list(target[sec.name]), live)
        plan.warnings += warnings
        plan.section_plans[sec.name] = _diff_section(sec, live, wanted, plan)
    return plan


def _diff_section(
    sec: Section, live: list[dict[str, Any]], wanted: list[dict[str, Any]], plan: Plan
) -> SectionPlan:
    before, after = _indexed(sec, live), _indexed(sec, wanted)
    result = SectionPlan()

    def touch(item: Mapping[str, Any]) -> None:
        project = sec.project_of(item)
        if project is None:
            plan.is_global = True
        else:
            plan.projects.add(project)

    for key, item in after.items():
        old = before.get(key)
        if old is None:
            result.creates.append(item)
            plan.changes.append(Change(sec.name, CREATE, key, _field_changes({}, item)))
            touch(item)
        elif old != item:
            result.updates.append((old, item))
            plan.changes.append(Change(sec.name, UPDATE, key, _field_changes(old, item)))
            touch(old)
            touch(item)
    for key, item in before.items():
        if key not in after:
            result.deletes.append(item)
            plan.changes.append(Change(sec.name, DELETE, key, _field_changes(item, {})))
            touch(item)
    if sec.ordered:
        for group, (old_order, new_order) in _orders(sec, before, after).items():
            # Creates are appended, so the order needs setting when survivors then newcomers differ.
            kept = [k for k in old_order if k in after]
            if kept + [k for k in new_order if k not in before] != new_order:
                result.orders[group] = new_order
                label = group or "order"
                plan.changes.append(
                    Change(sec.name, REORDER, label, (FieldChange("order", old_order, new_order),))
                )
                if group:
                    plan.projects.add(group)
                else:
                    plan.is_global = True
    return result


def _orders(
    sec: Section, before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> dict[str, tuple[list[str], list[str]]]:
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for key, item in before.items():
        groups.setdefault(sec.group_of(item), ([], []))[0].append(key)
    for key, item in after.items():
        groups.setdefault(sec.group_of(item), ([], []))[1].append(key)
    return groups


def _field_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    names = list(new) + [k for k in old if k not in new]
    return tuple(
        FieldChange(name, old.get(name), new.get(name)) for name in names if old.get(name) != new.get(name)
    )


# --- References --------------------------------------------------------------------------------


def check_references(
    target: Mapping[str, list[dict[str, Any]]],
    current: Mapping[str, list[dict[str, Any]]],
    known: Callable[[str, Iterable[str]], set[str]],
) -> list[str]:
    """Refuse a target whose items name what will not exist once it is applied.

    Sections absent from the file keep their live items, and those must still resolve too (a file
    deleting a semantic type that an unmanaged rule uses is refused). `known(kind, names)` answers
    which of the names exist outside the document (projects, people, groups, service accounts).
    Unknown IdP groups are not an error: they are created empty and filled at sign-in. Returns
    warnings.
    """
    effective = {s.name: list(target.get(s.name, current.get(s.name, []))) for s in sections()}
    defined: dict[str, set[str]] = {}
    for sec in sections():
        if sec.provides:
            defined[sec.provides] = {sec.key(item) for item in effective[sec.name]}
    warnings = []
    for sec in sections():
        from_file = sec.name in target
        for index, item in enumerate(effective[sec.name]):
            for ref in sec.references(item):
                names = set(ref.names)
                found = defined[ref.kind] & names if ref.kind in defined else known(ref.kind, names)
                for missing in sorted(names - found):
                    if ref.kind == "group":
                        warnings.append(f"IdP group {missing!r} does not exist yet; it is created empty")
                        continue
                    where = f"{sec.name}[{index}].{ref.field}" if from_file else sec.name
                    suffix = "" if from_file else f" (by {sec.key(item)!r}, which the file leaves as it is)"
                    raise DocumentError(
                        where,
                        f"unknown {ref.kind.replace('_', ' ')} {missing!r}{suffix}",
                        reason="unknown",
                        name=missing,
                    )
    return sorted(set(warnings))


def plan_against_live(target: Mapping[str, list[dict[str, Any]]]) -> Plan:
    """Check a parsed document against the live policy and the catalog, and diff it.

    Refuses (DocumentError) names that will not exist and a managed live section holding two items
    with the same key (such a policy cannot be matched item by item; rename one first). Warns
    (`masking.policy.warnings`) about what would be valid but may not work, such as an approval
    policy needing more approvals than there are approvers.
    """
    current = export_document()
    for sec in sections():
        if sec.name in target:
            keys = [sec.key(item) for item in current[sec.name]]
            duplicates = sorted({k for k in keys if keys.count(k) > 1})
            if duplicates:
                raise DocumentError(
                    sec.name, f"the live policy has more than one {duplicates[0]!r}; rename one first"
                )
    warnings = check_references(target, current, _known_outside)
    plan = diff_documents(current, target)
    plan.warnings = warnings + plan.warnings + plan_warnings(target, current, plan)
    plan.warnings += shadow_warnings(target, plan)
    return plan


# --- Items that never apply --------------------------------------------------------------------

ALWAYS_TRUE = ("", "true")
_NOUNS = {"rules": "rule", "approval_policies": "approval policy"}


def shadow_warnings(target: Mapping[str, list[dict[str, Any]]], plan: Plan) -> list[str]:
    """Items of ordered sections (first enabled match wins) that can never apply: an enabled item
    placed after an enabled item of its group whose condition is always true (`true`, or empty).

    Said when the plan creates or updates either of the two, or reorders their group, so a plan
    that puts an item where it never applies says so; it never refuses the plan.
    """
    target = canonical_document(target)
    warnings = []
    for sec in sections():
        if not sec.ordered or sec.name not in target:
            continue
        mine = [c for c in plan.changes if c.section == sec.name]
        changed = {c.key for c in mine if c.action in (CREATE, UPDATE)}
        reordered = {c.key for c in mine if c.action == REORDER}
        noun = _NOUNS.get(sec.name, f"{sec.name} item")
        catch_all: dict[str, str] = {}  # group -> key of its first enabled always-true item
        for item in target[sec.name]:
            if not item.get("enabled", True):
                continue
            group, key = sec.group_of(item), sec.key(item)
            first = catch_all.get(group)
            if first is None:
                if str(item.get("condition") or "").strip() in ALWAYS_TRUE:
                    catch_all[group] = key
                continue
            if key in changed or first in changed or (group or "order") in reordered:
                warnings.append(
                    f"{noun} {key!r} never applies: it comes after {noun} {first!r}, whose condition "
                    f"is always true, and the first enabled {noun} that matches wins; move it above "
                    f"{first!r}, or narrow or disable {first!r}"
                )
    return warnings


def _known_outside(kind: str, names: Iterable[str]) -> set[str]:
    """Which names exist in the catalog and identity (not defined by the document itself)."""
    from django.contrib.auth.models import Group

    from identity.models import ServiceAccount
    from masking.models import Project

    wanted = list(names)
    lookups: dict[str, Any] = {
        "project": Project.objects.filter(key__in=wanted).values_list("key", flat=True),
        "user": User.objects.filter(username__in=wanted).values_list("username", flat=True),
        "group": Group.objects.filter(name__in=wanted).values_list("name", flat=True),
        "service_account": ServiceAccount.objects.filter(name__in=wanted).values_list("name", flat=True),
    }
    return set(lookups[kind])


# --- Changes as a reader sees them -------------------------------------------------------------

# Sections listing only what is away from the defaults of something that exists anyway (a project's
# settings): creating or deleting one of their items changes settings; it makes or removes nothing.
SETTINGS_SECTIONS = {"projects": "project settings"}


def shown_change(change: Change | Mapping[str, Any]) -> dict[str, Any]:
    """A change (a plan's, or a stored version's dict) as the diff shows it: a settings item
    created or deleted reads as an update of those settings, from or to their defaults."""
    data = change.as_json() if isinstance(change, Change) else dict(change)
    label = SETTINGS_SECTIONS.get(data["section"])
    if label is None or data["action"] not in (CREATE, DELETE):
        return data
    sec = {s.name: s for s in sections()}[data["section"]]
    fields = [f if isinstance(f, Mapping) else vars(f) for f in data.get("fields", [])]
    side = "after" if data["action"] == CREATE else "before"
    item = {f["field"]: f[side] for f in fields}
    identity = {name for name in sec.fields if name in item and sec.key(item) == str(item[name])}
    raw = {name: item[name] for name in identity}
    defaults = sec.normalize(raw, Fields(raw, data["section"]))
    other = "before" if side == "after" else "after"
    shown = [
        {"field": f["field"], side: f[side], other: defaults.get(f["field"])}
        for f in fields
        if f["field"] not in identity and defaults.get(f["field"]) != f[side]
    ]
    return {**data, "section": label, "action": UPDATE, "fields": shown}
