"""CEL conditions over a column: compiled once, checked on save, evaluated with Bytebase's variables.

Conditions use Bytebase's names, so a rule written for Bytebase reads the same here:
`resource.environment_id`, `resource.project_id`, `resource.instance_id`, `resource.database_name`,
`resource.schema_name`, `resource.table_name`, `resource.column_name`,
`resource.classification_level` (a string, "" when unclassified, as in Bytebase), plus Veil's
`resource.tags` (a list of strings). Evaluation uses the Rust implementation behind
`common-expression-language`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import cel

RESOURCE_FIELDS: dict[str, str] = {
    "environment_id": "Environment of the instance, e.g. prod",
    "project_id": "Project key of the database",
    "instance_id": "Instance id, e.g. prod-pg",
    "database_name": "Database name",
    "schema_name": "Schema name ('' for engines without schemas)",
    "table_name": "Table name",
    "column_name": "Column name",
    "classification_level": "Classification level as a string ('0'..'4'), '' when unclassified",
    "tags": "Column tags, a list of strings",
}

_SAMPLES: tuple[dict[str, Any], ...] = (
    {
        "environment_id": "prod",
        "project_id": "shop",
        "instance_id": "prod-pg",
        "database_name": "shop",
        "schema_name": "public",
        "table_name": "customers",
        "column_name": "email",
        "classification_level": "3",
        "tags": ["pii"],
    },
    {
        "environment_id": "dev",
        "project_id": "x",
        "instance_id": "dev-pg",
        "database_name": "d",
        "schema_name": "",
        "table_name": "t",
        "column_name": "c",
        "classification_level": "",
        "tags": [],
    },
)
_FIELD_REFERENCE = re.compile(r"\bresource\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_STRING_LITERAL = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")


class ConditionError(ValueError):
    """A condition that does not compile, names an unknown variable, or does not yield a bool."""


@lru_cache(maxsize=65536)
def compile_condition(expression: str) -> cel.Program:
    """Compile once per distinct text; grants that share a scope share a program."""
    return cel.compile(expression)


def check_condition(expression: str) -> None:
    """Refuse, with a message for the admin, a condition that cannot be evaluated safely.

    Checks: it compiles; it uses only the `resource` variable and its known fields; and on sample
    columns it evaluates to a boolean (catching type errors such as `resource.column_name > 3`).
    """
    if not expression.strip():
        return
    try:
        program = compile_condition(expression)
    except ValueError as exc:
        raise ConditionError(f"does not compile: {str(exc).splitlines()[0]}") from exc
    unknown_vars = [v for v in program.variables() if v != "resource" and v not in _bound_names(expression)]
    if unknown_vars:
        raise ConditionError(f"unknown variable(s): {', '.join(unknown_vars)}; only `resource` is available")
    without_strings = _STRING_LITERAL.sub('""', expression)
    unknown_fields = sorted(set(_FIELD_REFERENCE.findall(without_strings)) - set(RESOURCE_FIELDS))
    if unknown_fields:
        raise ConditionError(
            f"unknown field(s) resource.{', resource.'.join(unknown_fields)}; "
            f"known: {', '.join(RESOURCE_FIELDS)}"
        )
    for sample in _SAMPLES:
        try:
            result = program.execute({"resource": sample})
        except Exception as exc:  # the CEL runtime raises several exception types
            raise ConditionError(f"cannot be evaluated: {str(exc).splitlines()[0]}") from exc
        if not isinstance(result, bool):
            raise ConditionError(f"must evaluate to true or false, not {type(result).__name__}")


def _bound_names(expression: str) -> set[str]:
    """Names bound by comprehension macros (`tags.exists(t, ...)`), which CEL reports as variables."""
    return set(re.findall(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,", expression))


def resource_context(resource: Mapping[str, Any]) -> cel.Context:
    """The `resource` variable converted for the CEL runtime once, to evaluate many conditions on
    one column: converting a dict on every evaluation cost 38x the evaluation (docs/performance.md)."""
    return cel.Context(variables={"resource": dict(resource)})


def evaluate(expression: str, resource: Mapping[str, Any] | cel.Context) -> bool:
    """True only when the condition evaluates to exactly `true`. `resource` is a column's resource
    or its `resource_context`. Errors propagate to the caller, which decides what failing closed
    means in its context."""
    if not expression.strip():
        return True
    variables = resource if isinstance(resource, cel.Context) else {"resource": resource}
    return compile_condition(expression).execute(variables) is True
