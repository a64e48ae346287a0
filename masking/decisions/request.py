"""Parsing the body of a decision request, by hand, because it is Veil's hot path.

DRF's nested serializers spent a third of a decision request validating twenty column references
(measured in `bench/http.py`). This parser checks exactly what `DecisionsInputSerializer`
declares (which still documents the endpoint in the OpenAPI schema) and raises DRF's
`ValidationError` with the same field paths, so clients see the one error shape either way. Like
every Veil API it takes strings only where the schema says string (no number read as text) and
no string holding NUL (PostgreSQL text cannot: a principal's lookup would fail, and the answer
would be a degraded mask rather than a 400 naming the field).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rest_framework.exceptions import ValidationError

from masking.decisions.engine import ColumnKey

_SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")
_COLUMN_FIELDS = ("instance", "database", "schema", "table", "column")
_TOP_FIELDS = {"principal", "query_id", "columns"}
_PRINCIPAL_FIELDS = {"user", "service_account", "groups"}


@dataclass(frozen=True)
class DecisionRequest:
    principal: dict[str, str]
    asserted_groups: list[str]
    query_id: str
    columns: list[ColumnKey]


def parse_decision_request(data: Any, *, max_columns: int) -> DecisionRequest:
    """Validate and convert a decision request body; ValidationError names every bad field."""
    if not isinstance(data, dict):
        raise ValidationError({"body": ["Expected a JSON object."]})
    errors: dict[str, list[str]] = {name: ["Unknown field."] for name in sorted(set(data) - _TOP_FIELDS)}
    principal, groups = _principal(data.get("principal"), errors)
    query_id = data.get("query_id", "")
    if not isinstance(query_id, str) or len(query_id) > 200 or "\x00" in query_id:
        errors["query_id"] = ["Must be a string of at most 200 characters, without NUL."]
    columns = _columns(data.get("columns"), errors, max_columns)
    if errors:
        raise ValidationError(errors)
    return DecisionRequest(principal, groups, query_id, columns)


def _principal(raw: Any, errors: dict[str, list[str]]) -> tuple[dict[str, str], list[str]]:
    if raw is None:
        errors["principal"] = ["This field is required."]
        return {}, []
    if not isinstance(raw, dict):
        errors["principal"] = ["Expected an object with `user` or `service_account`."]
        return {}, []
    for name in sorted(set(raw) - _PRINCIPAL_FIELDS):
        errors[f"principal.{name}"] = ["Unknown field."]
    if ("user" in raw) == ("service_account" in raw):
        errors["principal"] = ["give exactly one of `user` or `service_account`"]
        return {}, []
    if "user" in raw:
        user = raw["user"]
        if not isinstance(user, str) or not user.strip() or len(user) > 254 or "\x00" in user:
            errors["principal.user"] = ["Must be a non-blank string of at most 254 characters, without NUL."]
        spec = {"user": user}
    else:
        account = raw["service_account"]
        if not isinstance(account, str) or not _SLUG.match(account) or len(account) > 64:
            errors["principal.service_account"] = [
                "Must be a service account name (letters, digits, - and _)."
            ]
        spec = {"service_account": account}
    groups = raw.get("groups", [])
    if "groups" in raw and "user" not in raw:
        errors["principal.groups"] = ["groups can only be asserted for a user"]
    elif (
        not isinstance(groups, list)
        or len(groups) > 200
        or not all(isinstance(g, str) and 0 < len(g) <= 150 and "\x00" not in g for g in groups)
    ):
        errors["principal.groups"] = ["Must be a list of at most 200 group names (1 to 150 characters)."]
    return spec, groups if isinstance(groups, list) else []


def _columns(raw: Any, errors: dict[str, list[str]], max_columns: int) -> list[ColumnKey]:
    if raw is None:
        errors["columns"] = ["This field is required."]
        return []
    if not isinstance(raw, list) or not raw:
        errors["columns"] = ["Must be a non-empty list of column references."]
        return []
    if len(raw) > max_columns:
        errors["columns"] = [f"{len(raw)} columns; at most {max_columns} per request"]
        return []
    keys = []
    for index, column in enumerate(raw):
        key = _well_formed_column(column)
        if key is not None:
            keys.append(key)
            continue
        path = f"columns[{index}]"
        if not isinstance(column, dict):
            errors[path] = ["Expected an object with instance, database, schema, table, column."]
            continue
        for name in sorted(set(column) - set(_COLUMN_FIELDS)):
            errors[f"{path}.{name}"] = ["Unknown field."]
        values: list[str] = []
        for name in _COLUMN_FIELDS:
            value = column.get(name, "" if name == "schema" else None)
            if value is None:
                errors[f"{path}.{name}"] = ["This field is required."]
            elif (
                not isinstance(value, str)
                or len(value) > 128
                or (name != "schema" and not value)
                or "\x00" in value
            ):
                errors[f"{path}.{name}"] = [
                    "Must be a non-empty string of at most 128 characters, without NUL."
                ]
            else:
                values.append(value)
        if len(values) == len(_COLUMN_FIELDS):
            keys.append(ColumnKey(*values))
    return keys


def _well_formed_column(column: Any) -> ColumnKey | None:
    """The column key when the reference is exactly what a client normally sends (five non-empty
    strings of at most 128 characters without NUL, `schema` possibly empty); None sends it through the
    detailed checks above, which name what is wrong. Written out flat: a request may carry a
    thousand columns, and this is the hot path."""
    if type(column) is not dict or len(column) != 5:
        return None
    try:
        instance, database, schema = column["instance"], column["database"], column["schema"]
        table, name = column["table"], column["column"]
    except KeyError:
        return None
    if (
        type(instance) is str
        and type(database) is str
        and type(schema) is str
        and type(table) is str
        and type(name) is str
        and 0 < len(instance) <= 128
        and 0 < len(database) <= 128
        and len(schema) <= 128
        and 0 < len(table) <= 128
        and 0 < len(name) <= 128
        and "\x00" not in instance
        and "\x00" not in database
        and "\x00" not in schema
        and "\x00" not in table
        and "\x00" not in name
    ):
        return ColumnKey(instance, database, schema, table, name)
    return None
