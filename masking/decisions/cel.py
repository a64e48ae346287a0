"""CEL conditions over a column: compiled once, checked on save, evaluated with Bytebase's variables.

Conditions use Bytebase's names, so a rule written for Bytebase reads the same here:
`resource.environment_id`, `resource.project_id`, `resource.instance_id`, `resource.database_name`,
`resource.schema_name`, `resource.table_name`, `resource.column_name`,
`resource.classification_level` (a string, "" when unclassified, as in Bytebase), plus Veil's
`resource.tags` (a list of strings). Evaluation uses the Rust implementation behind
`common-expression-language`.

`check_condition` checks a condition over any one variable described by a `ConditionVariable`
(its known fields and sample values of the right types), so other kinds of conditions (an
approval policy's, over `request`) get the same messages as masking rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cel

from masking.decisions.cel_cost import MAX_CONDITION_CHARS, Token, cost_problem
from masking.decisions.cel_cost import tokens as _tokens

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


@dataclass(frozen=True)
class ConditionVariable:
    """The one variable a kind of condition is written over: its name, its known fields (name ->
    description, listed when a condition names another), and sample values of the right types,
    on which a condition must evaluate to a bool (and whose types tell what a field compares with)."""

    name: str
    fields: Mapping[str, str]
    samples: tuple[Mapping[str, Any], ...]


RESOURCE = ConditionVariable("resource", RESOURCE_FIELDS, _SAMPLES)


class ConditionError(ValueError):
    """A condition that does not compile, could cost too much to evaluate, names an unknown
    variable or field, compares values of types that never match, or does not yield a bool."""


@dataclass(frozen=True)
class _Refusal:
    message: str


@lru_cache(maxsize=65536)
def _program(expression: str) -> cel.Program | _Refusal:
    """Compiled once per distinct text (grants that share a scope share a program), and a refusal
    remembered as well: a saved condition over the limits is judged once, not once per column."""
    problem = cost_problem(expression) if len(expression) > MAX_CONDITION_CHARS else None
    if problem:
        return _Refusal(problem)
    try:
        program = cel.compile(expression)
    except ValueError as exc:
        return _Refusal(explain_compile_error(str(exc), expression))
    problem = cost_problem(expression)
    return _Refusal(problem) if problem else program


def compile_condition(expression: str) -> cel.Program:
    """The program for a condition whose cost is bounded (`masking.decisions.cel_cost`); ConditionError
    otherwise, before anything runs. Every evaluation goes through here, so a condition saved
    before a limit existed fails closed where it is evaluated."""
    found = _program(expression)
    if isinstance(found, _Refusal):
        raise ConditionError(found.message)
    return found


def condition_problem(expression: str) -> str | None:
    """Why a saved condition cannot be evaluated (it fails closed wherever it is used), or None."""
    found = _program(expression) if expression.strip() else None
    return found.message if isinstance(found, _Refusal) else None


def check_condition(expression: str, variable: ConditionVariable = RESOURCE) -> None:
    """Refuse, with a message for the admin, a condition that cannot be evaluated safely.

    Checks: it compiles and its cost is bounded (`masking.decisions.cel_cost`); it uses only `variable` and
    its known fields; it never compares a field with a literal of another type
    (`resource.classification_level == 3`, always false: CEL does not convert between types); and
    on the sample values it evaluates to a boolean (catching other type errors, such as
    `resource.column_name > 3`).
    """
    if not expression.strip():
        return
    program = compile_condition(expression)
    name = variable.name
    unknown_vars = [v for v in program.variables() if v != name and v not in _bound_names(expression)]
    if unknown_vars:
        raise ConditionError(f"unknown variable(s): {', '.join(unknown_vars)}; only `{name}` is available")
    tokens = _tokens(expression)
    unknown_fields = sorted(_field_references(tokens, name) - set(variable.fields))
    if unknown_fields:
        raise ConditionError(
            f"unknown field(s) {name}.{f', {name}.'.join(unknown_fields)}; "
            f"known: {', '.join(variable.fields)}"
        )
    mismatches = type_mismatches(tokens, variable)
    if mismatches:
        raise ConditionError("; ".join(mismatches))
    for sample in variable.samples:
        try:
            result = program.execute({name: dict(sample)})
        except Exception as exc:  # the CEL runtime raises several exception types
            raise ConditionError(f"cannot be evaluated: {str(exc).splitlines()[0]}") from exc
        if not isinstance(result, bool):
            raise ConditionError(f"must evaluate to true or false, not {type(result).__name__}")


def _bound_names(expression: str) -> set[str]:
    """Names bound by comprehension macros (`tags.exists(t, ...)`), which CEL reports as variables."""
    return set(re.findall(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,", expression))


# --- Compile errors ----------------------------------------------------------------------------

_PARSE_ERROR = re.compile(r"ERROR: <input>:(?P<line>\d+):(?P<column>\d+): (?P<detail>[^\n]*)")


def explain_compile_error(raw: str, expression: str = "") -> str:
    """A CEL parse error as a sentence, its position, and CEL's own words kept at the end.

    `Failed to parse expression '...': ERROR: <input>:1:13: Syntax error: mismatched input '<EOF>'
    expecting {...}` (plus a caret drawing) becomes `is not valid CEL: the condition ends too
    early, something is missing at column 13 (CEL: Syntax error: mismatched input '<EOF>')`: the
    list of tokens ANTLR expected is dropped.
    """
    match = _PARSE_ERROR.search(raw)
    if match is None:
        first = raw.strip().splitlines()[0] if raw.strip() else "unknown error"
        return f"is not valid CEL ({_without_expected_tokens(first)})"
    line, column = int(match["line"]), int(match["column"])
    detail = _without_expected_tokens(match["detail"].strip())
    where = f"line {line}, column {column}" if "\n" in expression.strip() else f"column {column}"
    return f"is not valid CEL: {_parse_hint(detail)} at {where} (CEL: {detail})"


_EXPECTED_TOKENS = re.compile(r"\s*expecting \{[^}]*\}?")


def _without_expected_tokens(detail: str) -> str:
    """CEL's detail without ANTLR's list of the tokens it expected (`expecting {'[', '{', ...,
    NUM_FLOAT, ...}`): grammar names that mean nothing to an admin. `expecting <EOF>` stays."""
    return _EXPECTED_TOKENS.sub("", detail).strip()


def _parse_hint(detail: str) -> str:
    text = detail.removeprefix("Syntax error: ")
    recognised = re.match(r"token recognition error at: '(.*)'$", text)
    if recognised:
        token = recognised[1]
        if token[:1] in ("'", '"'):
            return "a quoted string is not closed"
        if token.strip() == "=":
            return "`=` is not a comparison (use `==`)"
        return f"{token.strip()!r} is not part of CEL"
    if text.startswith("mismatched input '<EOF>'"):
        return "the condition ends too early, something is missing"
    extraneous = re.match(r"extraneous input '(.*)' expecting <EOF>", text)
    if extraneous:
        return f"{extraneous[1]!r} follows a complete condition (a missing && or ||?)"
    unexpected = re.match(r"(?:mismatched|extraneous) input '(.*)'", text)
    if unexpected:
        return f"unexpected {unexpected[1]!r}"
    return "syntax error"


# --- Comparisons whose types never match -------------------------------------------------------

_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
# Tokens around a `field op literal` atom that leave it a comparison of exactly those two values
# (an arithmetic operator or a method call next to either side would change what is compared).
_BEFORE = (None, "(", "&&", "||", "?", ":", ",", "[", "{")
_AFTER = (None, ")", "&&", "||", "?", ":", ",", "]", "}")
_TYPE_WORDS = {
    "string": "a string",
    "number": "a number",
    "bool": "true or false",
    "list": "a list",
    "map": "a map",
    "bytes": "bytes",
    "null": "null",
}

_PLURALS = {
    "string": "strings",
    "number": "numbers",
    "bool": "booleans",
    "list": "lists",
    "map": "maps",
    "bytes": "byte strings",
    "null": "nulls",
}


def _field_references(tokens: list[Token], name: str) -> set[str]:
    """The fields read from the variable `name` (`resource.x`, not `other.resource.x`); names
    inside string literals are not references."""
    return {
        tokens[i + 2].text
        for i, token in enumerate(tokens[:-2])
        if token.kind == "ident"
        and token.text == name
        and _text(tokens[i + 1]) == "."
        and tokens[i + 2].kind == "ident"
        and (i == 0 or _text(tokens[i - 1]) != ".")
    }


def _value_type(value: Any) -> str | None:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "map"
    if value is None:
        return "null"
    return None


def _field_types(variable: ConditionVariable, field: str) -> tuple[str | None, str | None]:
    """The field's type and, for a list, its elements' type, from the samples (None: unknown)."""
    values = [sample[field] for sample in variable.samples if field in sample]
    types = {_value_type(v) for v in values}
    if len(types) != 1:
        return None, None
    kind = types.pop()
    if kind != "list":
        return kind, None
    elements = {_value_type(e) for v in values for e in v}
    return kind, elements.pop() if len(elements) == 1 else None


def _literal_type(token: Token) -> str | None:
    if token.kind in ("str", "bytes"):
        return "string" if token.kind == "str" else "bytes"
    if token.kind == "num":
        return "number"
    if token.kind == "ident":
        return {"true": "bool", "false": "bool", "null": "null"}.get(token.text)
    return None


def _text(token: Token | None) -> str | None:
    return token.text if token is not None and token.kind == "op" else ("" if token else None)


def type_mismatches(tokens: list[Token], variable: ConditionVariable) -> list[str]:
    """`field op literal` (or `literal op field`, `field in [literals]`, `literal in list-field`)
    comparisons whose two sides have types that never match. CEL does not convert between types,
    so `request.duration_hours == "4"` is always false and `!=` always true; an ordering such as
    `<` fails. Only plain atoms are judged; anything more involved is left to the evaluation.
    `tokens`: the condition as `_tokens` reads it."""
    found: list[str] = []

    def at(i: int) -> Token | None:
        return tokens[i] if 0 <= i < len(tokens) else None

    def literal_at(i: int) -> tuple[Token, int] | None:
        """A literal starting at i (with a unary minus on a number); returns it and the next index."""
        token = at(i)
        if token is not None and token.kind == "op" and token.text == "-":
            number = at(i + 1)
            if number is not None and number.kind == "num":
                return Token("num", "-" + number.text), i + 2
            return None
        if token is not None and _literal_type(token) is not None:
            return token, i + 1
        return None

    def list_literal_at(i: int) -> tuple[list[Token], int] | None:
        if _text(at(i)) != "[":
            return None
        items, j = [], i + 1
        while _text(at(j)) != "]":
            literal = literal_at(j)
            if literal is None:
                return None
            items.append(literal[0])
            j = literal[1]
            if _text(at(j)) == ",":
                j += 1
            elif _text(at(j)) != "]":
                return None
        return items, j + 1

    for i, token in enumerate(tokens):
        if token.kind != "ident" or token.text != variable.name or _text(at(i + 1)) != ".":
            continue
        name_token, after = at(i + 2), at(i + 3)
        if name_token is None or name_token.kind != "ident" or name_token.text not in variable.fields:
            continue
        if _text(after) in (".", "(", "["):  # a method call or an index: not the field itself
            continue
        field = f"{variable.name}.{name_token.text}"
        kind, element = _field_types(variable, name_token.text)
        if kind is None:
            continue
        # field op literal, field in [literals]
        if _text(at(i - 1)) in _BEFORE and after is not None and after.text in (*_COMPARISONS, "in"):
            if after.text == "in":
                listed = list_literal_at(i + 4)
                if listed is not None and listed[0] and _text(at(listed[1])) in _AFTER:
                    types = {_literal_type(t) for t in listed[0]}
                    if not any(_compatible(kind, t) for t in types):
                        shown = "[" + ", ".join(t.text for t in listed[0]) + "]"
                        other = types.pop() if len(types) == 1 else None
                        found.append(_mismatch(field, kind, "in", shown, other))
            else:
                literal = literal_at(i + 4)
                if literal is not None and _text(at(literal[1])) in _AFTER:
                    other = _literal_type(literal[0])
                    if not _compatible(kind, other):
                        found.append(_mismatch(field, kind, after.text, literal[0].text, other))
        # literal op field, literal in list-field
        operator = at(i - 1)
        if operator is None or operator.text not in (*_COMPARISONS, "in") or _text(after) not in _AFTER:
            continue
        for start in (i - 2, i - 3):
            literal = literal_at(start)
            if literal is None or literal[1] != i - 1 or _text(at(start - 1)) not in _BEFORE:
                continue
            other = _literal_type(literal[0])
            if operator.text == "in":
                if kind == "list" and element is not None and not _compatible(element, other):
                    found.append(_element_mismatch(field, element, literal[0].text, other))
            elif not _compatible(kind, other):
                found.append(_mismatch(field, kind, operator.text, literal[0].text, other, field_first=False))
            break
    return list(dict.fromkeys(found))


def _compatible(kind: str | None, other: str | None) -> bool:
    return kind is None or other is None or kind == other


def _mismatch(
    field: str, kind: str, operator: str, literal: str, other: str | None, *, field_first: bool = True
) -> str:
    shown = f"{field} {operator} {literal}" if field_first else f"{literal} {operator} {field}"
    what = _TYPE_WORDS.get(other or "", "values of another type")
    if operator in ("<", "<=", ">", ">="):
        outcome = "so it cannot be evaluated"
    elif operator == "!=":
        outcome = "so it is always true"
    else:
        outcome = "so it is never true"
    message = (
        f"`{shown}` compares {field}, {_TYPE_WORDS[kind]}, with {what}: "
        f"CEL does not convert between types, {outcome}"
    )
    return message + _suggestion(kind, literal)


def _element_mismatch(field: str, element: str, literal: str, other: str | None) -> str:
    what = _TYPE_WORDS.get(other or "", "a value of another type")
    return (
        f"`{literal} in {field}` looks for {what} in {field}, a list of {_PLURALS[element]}: "
        "CEL does not convert between types, so it is never true" + _suggestion(element, literal)
    )


def _suggestion(kind: str, literal: str) -> str:
    if kind == "string" and re.fullmatch(r"-?[\d.]+", literal):
        return f' (write "{literal}")'
    unquoted = literal[1:-1] if literal[:1] in ("'", '"') and literal[-1:] == literal[:1] else None
    if kind == "number" and unquoted is not None and re.fullmatch(r"-?\d+(\.\d+)?", unquoted):
        return f" (write {unquoted}, without quotes)"
    return ""


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
