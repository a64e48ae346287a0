"""Import Bytebase's semantic types and global masking rules as a Veil policy document.

Bytebase keeps semantic types in the `SEMANTIC_TYPES` workspace setting (`SemanticTypeSetting`:
`types[]` with `id`, `title`, `description`, `algorithm`) and the global masking rules in the
`MASKING_RULE` policy (`MaskingRulePolicy`: `rules[]` with `id`, `condition` (a `google.type.Expr`
whose `title` the UI shows as the rule's title) and `semanticType`). Their API returns them as
`GET /v1/settings/SEMANTIC_TYPES` and `GET /v1/policies/masking_rule` (proto3 JSON, camelCase; the
snake_case proto names are accepted too). A file may hold one of those objects, a list of them, or
`{"settings": [...], "policies": [...]}` as the List endpoints answer.

Algorithms map one to one onto Veil's, which reproduce Bytebase's maskers:
`fullMask` -> `full`, `rangeMask` -> `range`, `md5Mask` -> `md5`, `innerOuterMask` -> `inner` or
`outer`; a type without an algorithm masks in full, as in Bytebase. The built-in types
`bb.default` and `bb.default-partial` are added when a rule names them. CEL conditions use the same
variables and are kept as they are. Bytebase ids are not slugs (`bb.default`), so keys are the id
with every other character turned into `-`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from masking.decisions.engine import FULL_ALGORITHM
from masking.policy.document import DocumentError, load_yaml_data
from shared import strict_json

BUILT_IN = {
    "bb.default": ("Default", "Bytebase's default: full mask", dict(FULL_ALGORITHM)),
    "bb.default-partial": ("Default partial", "Bytebase's default partial mask", {"type": "default_partial"}),
}


def load_bytebase(text: str) -> dict[str, Any]:
    """Parse a Bytebase export (JSON, or the same as YAML) into a raw Veil document; duplicate keys,
    YAML aliases and deep nesting are refused before the export is walked."""
    try:
        raw = strict_json.loads(text)
    except strict_json.JSONInputError as exc:
        raise DocumentError("bytebase", str(exc)) from None
    except ValueError:
        raw = load_yaml_data(text, "bytebase")
    return bytebase_to_document(raw)


def bytebase_to_document(raw: Any) -> dict[str, Any]:
    type_settings, rule_policies = _collect(raw)
    if not type_settings and not rule_policies:
        raise DocumentError(
            "bytebase", "holds no SEMANTIC_TYPES setting and no MASKING_RULE policy (see docs/policy.md)"
        )
    types: dict[str, dict[str, Any]] = {}
    for setting in type_settings:
        for index, item in enumerate(_get(setting, "types") or []):
            converted = _semantic_type(item, f"semantic type #{index}")
            types[converted["key"]] = converted
    rules: list[dict[str, Any]] = []
    for policy in rule_policies:
        for index, item in enumerate(_get(policy, "rules") or []):
            rule = _rule(item, index)
            if rule["semantic_type"] not in types:
                builtin = next((k for k in BUILT_IN if _key(k) == rule["semantic_type"]), None)
                if builtin is None:
                    raise DocumentError(
                        f"bytebase rule {item.get('id', index)}",
                        f"names semantic type {rule['semantic_type']!r}, which the export does not define",
                    )
                title, description, algorithm = BUILT_IN[builtin]
                types[_key(builtin)] = {
                    "key": _key(builtin),
                    "title": title,
                    "description": description,
                    "algorithm": algorithm,
                }
            if any(r["title"] == rule["title"] for r in rules):  # titles identify rules in Veil
                rule["title"] = f"{rule['title']} ({item.get('id', index)})"
            rules.append(rule)
    document: dict[str, Any] = {}
    if type_settings or types:
        document["semantic_types"] = sorted(types.values(), key=lambda t: t["key"])
    if rule_policies:
        document["rules"] = rules
    return document


def _collect(raw: Any) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The semantic-type settings and masking-rule policies anywhere in the export."""
    type_settings: list[Mapping[str, Any]] = []
    rule_policies: list[Mapping[str, Any]] = []

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for child in node:
                visit(child)
            return
        if not isinstance(node, Mapping):
            return
        for wrapper in ("settings", "policies"):
            if isinstance(node.get(wrapper), list):
                visit(node[wrapper])
        value = node.get("value")
        if isinstance(value, Mapping):
            setting = _get(value, "semanticType") or _get(value, "semanticTypeSettingValue")
            if isinstance(setting, Mapping):
                type_settings.append(setting)
        policy = _get(node, "maskingRulePolicy")
        if isinstance(policy, Mapping):
            rule_policies.append(policy)

    visit(raw)
    return type_settings, rule_policies


def _get(node: Mapping[str, Any], camel: str) -> Any:
    """A field by its proto3 JSON name or its proto name."""
    if camel in node:
        return node[camel]
    return node.get(re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower())


def _key(bytebase_id: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "-", bytebase_id.strip())[:64]


def _semantic_type(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, Mapping) or not str(item.get("id", "")).strip():
        raise DocumentError(f"bytebase {where}", "needs an id")
    bytebase_id = str(item["id"])
    builtin = BUILT_IN.get(bytebase_id)
    algorithm = _get(item, "algorithm")
    if algorithm:
        converted = _algorithm(algorithm, f"bytebase semantic type {bytebase_id}")
    else:
        converted = builtin[2] if builtin else dict(FULL_ALGORITHM)
    return {
        "key": _key(bytebase_id),
        "title": str(item.get("title") or (builtin[0] if builtin else bytebase_id)),
        "description": str(item.get("description") or ""),
        "algorithm": converted,
    }


def _algorithm(algorithm: Mapping[str, Any], where: str) -> dict[str, Any]:
    full, ranged = _get(algorithm, "fullMask"), _get(algorithm, "rangeMask")
    md5, inner_outer = _get(algorithm, "md5Mask"), _get(algorithm, "innerOuterMask")
    if full is not None:
        return {
            "type": "full",
            "substitution": str(_get(full, "substitution") or FULL_ALGORITHM["substitution"]),
        }
    if ranged is not None:
        slices = _get(ranged, "slices") or []
        if not slices:
            raise DocumentError(where, "rangeMask has no slices (Bytebase would show the value unmasked)")
        return {
            "type": "range",
            # proto3 JSON leaves out zero values: a missing start is 0, a missing substitution "".
            "slices": [
                {
                    "start": int(_get(s, "start") or 0),
                    "end": int(_get(s, "end") or 0),
                    "substitution": str(_get(s, "substitution") or ""),
                }
                for s in slices
            ],
        }
    if md5 is not None:
        return {"type": "md5", "salt": str(_get(md5, "salt") or "")}
    if inner_outer is not None:
        kind = str(_get(inner_outer, "type") or "")
        if kind not in ("INNER", "OUTER", "1", "2"):
            raise DocumentError(where, f"innerOuterMask type must be INNER or OUTER (got {kind or 'none'})")
        return {
            "type": "inner" if kind in ("INNER", "1") else "outer",
            "prefix_len": int(_get(inner_outer, "prefixLen") or 0),
            "suffix_len": int(_get(inner_outer, "suffixLen") or 0),
            "substitution": str(_get(inner_outer, "substitution") or "*"),
        }
    raise DocumentError(
        where, f"unsupported algorithm {sorted(algorithm)}: expected fullMask, rangeMask, ..."
    )


def _rule(item: Any, index: int) -> dict[str, Any]:
    where = f"bytebase rule #{index}"
    if not isinstance(item, Mapping):
        raise DocumentError(where, "must be an object")
    if "maskingLevel" in item or "masking_level" in item:
        raise DocumentError(where, "uses maskingLevel (Bytebase before semantic types); export it again")
    condition = _get(item, "condition") or {}
    expression = str(condition.get("expression", "") if isinstance(condition, Mapping) else condition)
    rule_id = str(item.get("id") or index)
    title = str(condition.get("title") or "") if isinstance(condition, Mapping) else ""
    return {
        "title": title.strip() or f"Bytebase rule {rule_id}",
        "condition": expression.strip() or "true",
        "semantic_type": _key(str(_get(item, "semanticType") or "bb.default")),
        "enabled": True,
    }
