"""What every Veil API shares: one error shape and serializers that refuse what they do not state.

Every error leaves the API as
`{"error": {"status": 400, "code": "invalid", "message": "...", "fields": {"a.b[0].c": ["..."]}}}`
where `message` names the first offending field, so a client sees at a glance what to fix.

Input serializers (`StrictSerializer`) accept exactly what the OpenAPI schema says
(`shared.schema` states their constraints there): no unknown field, and a body's values of the
JSON type the schema gives them (DRF alone would read `7` as the string `"7"` and `"true"` as
true). `QuerySerializer` reads a query string, where every value is text, given once.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into `{"path.to[0].field": [messages]}`."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors":
                path = prefix or "body"
            elif isinstance(key, int):  # a ListSerializer reports item errors by index
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten_errors(value, path))
    elif isinstance(detail, list) and detail and all(isinstance(d, (dict, list)) for d in detail):
        for index, value in enumerate(detail):
            if value:
                flat.update(flatten_errors(value, f"{prefix}[{index}]"))
    elif isinstance(detail, list):
        flat[prefix or "body"] = [str(d) for d in detail]
    else:
        flat[prefix or "body"] = [str(detail)]
    return flat


def error_payload(
    status: int, code: str, message: str, fields: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """The one error shape of every Veil API."""
    return {"error": {"status": status, "code": code, "message": message, "fields": fields or {}}}


def validation_error_payload(detail: Any) -> dict[str, Any]:
    """A 400 naming every bad field, the first one in `message`."""
    fields = flatten_errors(detail)
    first_field, messages = next(iter(fields.items()))
    return error_payload(400, "invalid", f"{first_field}: {messages[0]}", fields)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        response.data = validation_error_payload(exc.detail)
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        response.data = error_payload(response.status_code, code, str(exc.detail))
    return response


@extend_schema_serializer(component_name="ErrorDetail")
class ErrorDetailOut(serializers.Serializer):
    status = serializers.IntegerField(help_text="The HTTP status code, repeated")
    code = serializers.CharField(
        help_text="For programs: `invalid`, `parse_error`, `not_authenticated`, `authentication_failed`, "
        "`permission_denied`, `not_found`, `conflict`, `unsupported_media_type`, ..."
    )
    message = serializers.CharField(help_text="For people; a 400's names the first bad field")


# `fields` would shadow `Serializer.fields`: declared the way DRF reads declared fields.
ErrorDetailOut._declared_fields["fields"] = serializers.DictField(
    child=serializers.ListField(child=serializers.CharField()),
    help_text="A 400's bad fields by path (`columns[3].table`, `body` for the whole body), each with "
    "what is wrong with it; empty for other errors",
)


@extend_schema_serializer(component_name="Error")
class ErrorOut(serializers.Serializer):
    """The one error shape of every Veil API."""

    error = ErrorDetailOut()


def _json_type_problem(field: serializers.Field, value: Any) -> Any:
    """Why `value` is not of the JSON type the schema gives `field` (a message, or DRF's nested
    detail for a list's items), or None. Null is left to the field (`allow_null`)."""
    if value is None or isinstance(field, (serializers.Serializer, serializers.ListSerializer)):
        return None  # a nested serializer refuses what is not an object or a list itself
    if isinstance(field, serializers.ChoiceField):
        kinds = {type(choice) for choice in field.choices}
        if kinds == {int}:
            return None if type(value) is int else "Must be an integer."
        return None if isinstance(value, str) else "Must be a string."
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be true or false."
    if isinstance(field, serializers.IntegerField):
        return None if type(value) is int else "Must be an integer."
    if isinstance(field, (serializers.FloatField, serializers.DecimalField)):
        return None if type(value) in (int, float) else "Must be a number."
    if isinstance(field, (serializers.CharField, serializers.DateTimeField, serializers.DateField)):
        return None if isinstance(value, str) else "Must be a string."
    if isinstance(field, serializers.ListField):
        if not isinstance(value, list):
            return "Must be a list."
        items = {i: [p] for i, item in enumerate(value) if (p := _json_type_problem(field.child, item))}
        return items or None
    if isinstance(field, serializers.DictField):
        if not isinstance(value, dict):
            return "Must be an object."
        values = {k: [p] for k, item in value.items() if (p := _json_type_problem(field.child, item))}
        return values or None
    return None


class StrictSerializer(serializers.Serializer):
    """A serializer that answers 400 for fields it does not know, instead of silently dropping them,
    and for a value of another JSON type than its field's, instead of converting it.

    A typo in a field name (`"colums"`) must not turn into a request that does less than asked, and
    a client whose generated code sends what the schema says gets no surprise either way.
    """

    json_types = True  # off for a query string, whose values are all text

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            errors: dict[str, Any] = {
                name: ["Unknown field."] for name in sorted(set(data) - set(self.fields))
            }
            if self.json_types:
                for name, field in self.fields.items():
                    if name in data and (problem := _json_type_problem(field, data[name])):
                        errors[name] = problem if isinstance(problem, dict) else [problem]
            if errors:
                raise serializers.ValidationError(errors, code="invalid")
        return super().to_internal_value(data)


class QuerySerializer(StrictSerializer):
    """A query string's parameters: text, each given once (a repeated one is a 400, not the last
    of them silently), none unknown. Give it `request.query_params`."""

    json_types = False

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "getlist"):
            repeated = sorted(name for name in data if len(data.getlist(name)) > 1)
            if repeated:
                raise serializers.ValidationError(
                    {name: ["Given more than once; give it once."] for name in repeated}, code="invalid"
                )
            data = data.dict()
        return super().to_internal_value(data)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """`handler404`: the API's error shape under /api/ (a client parses JSON), the branded page elsewhere."""
    if _is_api(request):
        message = f"No API operation at {request.path}; see /api/v1/docs."
        return JsonResponse(error_payload(404, "not_found", message), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """`handler500`, likewise: a JSON 500 under /api/ (details are in the server's log only)."""
    if _is_api(request):
        message = "Veil failed to answer; the error is logged. Try again, or ask Veil's operators."
        return JsonResponse(error_payload(500, "server_error", message), status=500)
    return defaults.server_error(request)
