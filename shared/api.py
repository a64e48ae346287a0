"""What every Veil API shares: one error shape and serializers that refuse unknown fields.

Every error leaves the API as
`{"error": {"status": 400, "code": "invalid", "message": "...", "fields": {"a.b[0].c": ["..."]}}}`
where `message` names the first offending field, so a client sees at a glance what to fix.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
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


class StrictSerializer(serializers.Serializer):
    """A serializer that answers 400 for fields it does not know, instead of silently dropping them.

    A typo in a field name (`"colums"`) must not turn into a request that does less than asked.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field."] for name in unknown}, code="unknown_field"
                )
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
