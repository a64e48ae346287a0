"""The published OpenAPI schema as the truth an integrator generates a client from.

drf-spectacular's `AutoSchema` documents each operation's success and the fields its serializers
declare. This subclass (`REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]`) adds, once for every operation,
what the views and DRF do besides:

- the error answers every operation can give, in the one error shape (`shared.api.ErrorOut`),
  from what the operation is: 401 and 403 where it needs credentials (403 naming the view's
  `token_scope`), 404 where its path has parameters, 400 where it reads a body or a query string,
  415 where it reads a body. What only some views answer (409, 413, 503, a 202) they declare
  themselves with `extend_schema(responses=...)` and `error_response`;
- the constraints DRF checks but drf-spectacular leaves out of a request's schema: a non-blank
  string needs a character other than whitespace (DRF strips it first) and no string holds NUL,
  a list that may not be empty has `minItems`, an address is IPv4 or IPv6, and a `StrictSerializer`
  refuses unknown fields (`additionalProperties: false`); a serializer states what relates its
  fields to each other (`schema_constraints`, such as "exactly one of").

tests/test_api_fuzz.py holds Veil to this schema in both directions with schemathesis.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.plumbing import get_doc
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers

from shared.api import ErrorOut, StrictSerializer

# The characters Python's `str.strip()` removes (`str.isspace()`), spelled out: `\s` differs
# between regex dialects (ECMA's lacks U+001C..U+001F, which DRF strips). NUL is never accepted.
_SPACE = "\\t-\\r\\u001c- \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
NO_NUL = "^[^\\u0000]*$"
NOT_BLANK = f"^[^\\u0000]*[^\\u0000{_SPACE}][^\\u0000]*$"
NON_EMPTY = "^[^\\u0000]+$"


def error_response(description: str) -> OpenApiResponse:
    """An error answer in the API's one shape, for `extend_schema(responses={409: ...})`."""
    return OpenApiResponse(ErrorOut, description=description)


def _checks_permission(view: Any) -> bool:
    """Whether an authenticated caller may still be refused (403): the view names a token scope
    or has a permission class beyond "signed in"."""
    plain = (permissions.AllowAny, permissions.IsAuthenticated)
    classes = getattr(view, "permission_classes", [])
    return bool(getattr(view, "token_scope", None)) or any(
        not (isinstance(c, type) and issubclass(c, plain)) for c in classes
    )


def _is_input(field: Any) -> bool:
    """Whether a field reads a request: it belongs to a `StrictSerializer` (through lists too).
    Output serializers are plain ones; their strings may well be empty."""
    parent = getattr(field, "parent", None)
    while parent is not None and not isinstance(parent, serializers.Serializer):
        parent = getattr(parent, "parent", None)
    return isinstance(parent, StrictSerializer)


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, completed with the statuses and constraints it leaves out."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for status, description in self._error_statuses(operation).items():
            if str(status) not in responses:
                responses[str(status)] = self._get_response_for_code(error_response(description), str(status))
        if "401" in responses:
            responses["401"].setdefault("headers", {})["WWW-Authenticate"] = {
                "schema": {"type": "string", "enum": ["Bearer"]},
                "required": True,
                "description": "Answer with a bearer token",
            }
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _error_statuses(self, operation: dict[str, Any]) -> dict[int, str]:
        places = {parameter["in"] for parameter in operation.get("parameters", [])}
        statuses: dict[int, str] = {}
        if "requestBody" in operation or "query" in places:
            statuses[400] = (
                "Invalid: `error.fields` names each bad field (`columns[3].table`; `body` for the whole "
                "body) and `error.message` the first. `code` is `parse_error` for a body that is not "
                "JSON, names a key twice or nests over 64 levels deep, `invalid` otherwise."
            )
        if operation.get("security"):
            statuses[401] = (
                "Not authenticated: no credentials, or a token that is unknown, expired or revoked."
            )
            if _checks_permission(self.view):
                scope = getattr(self.view, "token_scope", None)
                needs = (
                    f"a token without the scope `{scope}`" if scope else "a token without the scope needed"
                )
                statuses[403] = f"Not allowed: {needs}, or a person without the permission needed."
        if "path" in places:
            statuses[404] = "Nothing here: no such object, or not one you may see."
        if "requestBody" in operation:
            statuses[415] = "The body is not sent as `application/json`."
        return statuses

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> dict[str, Any]:
        schema = super()._map_basic_serializer(serializer, direction)
        if isinstance(serializer, StrictSerializer):
            schema["additionalProperties"] = False
            if schema.get("description") == get_doc(StrictSerializer):
                del schema["description"]  # inherited: says nothing of this serializer
            schema.update(getattr(serializer, "schema_constraints", {}))
        return schema

    def _insert_field_validators(self, field: Any, schema: dict[str, Any]) -> None:
        """What DRF refuses in a request beyond the field's validators, which drf-spectacular maps
        first (a slug's or regex field's own pattern is already exact)."""
        super()._insert_field_validators(field, schema)
        if not _is_input(field):
            return
        if isinstance(field, serializers.CharField) and not isinstance(field, serializers.IPAddressField):
            if schema.get("type") == "string" and "format" not in schema and "pattern" not in schema:
                # Non-blank goes without `minLength: 1`: the pattern says it, and schemathesis
                # generates such strings several times faster than with both.
                schema["pattern"] = (
                    NO_NUL if field.allow_blank else NOT_BLANK if field.trim_whitespace else NON_EMPTY
                )
        elif isinstance(field, serializers.ListSerializer):
            least = max(0 if field.allow_empty else 1, getattr(field, "min_length", None) or 0)
            if least:
                schema["minItems"] = least
            if (most := getattr(field, "max_length", None)) is not None:
                schema["maxItems"] = most
        elif isinstance(field, serializers.ListField) and not field.allow_empty:
            schema["minItems"] = max(schema.get("minItems", 0), 1)

    def _map_serializer_field(self, field: Any, direction: Any, bypass_extensions: bool = False) -> Any:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, serializers.IPAddressField) and field.protocol == "both" and schema:
            schema["anyOf"] = [{"format": "ipv4"}, {"format": "ipv6"}]
        return schema
