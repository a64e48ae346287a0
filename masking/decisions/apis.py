"""The decision and access-event APIs, called by data-access layers with a service token."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import PrincipalKind
from audit.services import record_access_events
from identity.authentication import ServiceTokenAuthentication, ServiceTokenOnly
from identity.models import ApiToken, Scope
from masking.decisions.endpoint import answer_decisions
from masking.decisions.engine import ColumnKey
from masking.services.guard import record_guard_outcomes
from shared.api import StrictSerializer
from shared.schema import error_response


class PrincipalIn(StrictSerializer):
    user = serializers.CharField(max_length=254, required=False)
    service_account = serializers.SlugField(max_length=64, required=False)
    groups = serializers.ListField(
        child=serializers.CharField(max_length=150, trim_whitespace=False), required=False, max_length=200
    )
    schema_constraints = {
        "oneOf": [
            {"required": ["user"], "not": {"required": ["service_account"]}},
            {
                "required": ["service_account"],
                "not": {"anyOf": [{"required": ["user"]}, {"required": ["groups"]}]},
            },
        ]
    }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("user" in attrs) == ("service_account" in attrs):
            raise ValidationError("give exactly one of `user` or `service_account`")
        if "groups" in attrs and "user" not in attrs:
            raise ValidationError({"groups": ["groups can only be asserted for a user"]})
        return attrs


class ColumnRefIn(StrictSerializer):
    """Names as the data path gives them: kept as they are, surrounding spaces included."""

    instance = serializers.CharField(max_length=128, trim_whitespace=False)
    database = serializers.CharField(max_length=128, trim_whitespace=False)
    schema = serializers.CharField(max_length=128, allow_blank=True, default="", trim_whitespace=False)
    table = serializers.CharField(max_length=128, trim_whitespace=False)
    column = serializers.CharField(max_length=128, trim_whitespace=False)


class ReasonOut(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=[
            "rule",
            "semantic_type",
            "classification",
            "exemption",
            "grant",
            "unclassified",
            "not_sensitive",
            "unknown_column",
            "unknown_principal",
            "degraded",
        ]
    )
    id = serializers.IntegerField(required=False)
    title = serializers.CharField(required=False)
    expires_at = serializers.DateTimeField(required=False)
    request = serializers.CharField(required=False)


class DecisionOut(serializers.Serializer):
    action = serializers.ChoiceField(choices=["mask", "unmask"])
    semantic_type = serializers.CharField(allow_null=True)
    algorithm = serializers.JSONField(
        allow_null=True, help_text="Apply this to the value when action is mask"
    )
    reason = ReasonOut()
    ttl_s = serializers.IntegerField(
        help_text="Seconds this answer may be cached; never past an expiry it relied on"
    )


class DecisionsApi(APIView):
    """Mask or unmask, per column, for one principal. Fail-closed: any doubt is a mask.

    In production `config.wsgi` answers this path in front of Django's middleware with the same
    `answer_decisions` (see `masking.decisions.endpoint`); this route documents the endpoint and
    serves it to the test client and `runserver`."""

    authentication_classes = [ServiceTokenAuthentication]
    permission_classes: list[type] = []
    token_scope = Scope.DECISIONS  # checked by `answer_decisions`; named here for the schema

    def perform_authentication(self, request: Request) -> None:
        """`answer_decisions` authenticates (DRF's classes stay declared for the schema)."""

    class DecisionsInputSerializer(StrictSerializer):
        """The body as the OpenAPI schema documents it. Requests are parsed by the faster
        `parse_decision_request`, which a test keeps in agreement with this serializer."""

        principal = PrincipalIn()
        query_id = serializers.CharField(
            max_length=200, required=False, allow_blank=True, default="", trim_whitespace=False
        )
        columns = ColumnRefIn(many=True, allow_empty=False)

        def get_fields(self) -> dict[str, serializers.Field]:
            fields = super().get_fields()
            fields["columns"].max_length = settings.DECISION_MAX_COLUMNS  # type: ignore[attr-defined]
            return fields

    class DecisionsOutputSerializer(serializers.Serializer):
        policy_version = serializers.IntegerField(allow_null=True)
        decisions = DecisionOut(many=True)
        degraded = serializers.BooleanField(required=False)
        record_id = serializers.IntegerField(required=False, help_text="The audit record of the unmasks")

    @extend_schema(
        operation_id="decisions_create",
        request=DecisionsInputSerializer,
        responses={
            200: DecisionsOutputSerializer,
            413: error_response("The body is over `DATA_UPLOAD_MAX_MEMORY_SIZE`."),
            503: error_response(
                "Veil failed before it could count the columns to mask: mask them all. (A readable "
                "request gets a 200 masking every column, `degraded: true`, instead.)"
            ),
        },
        examples=[
            OpenApiExample(
                "Two columns",
                request_only=True,
                value={
                    "principal": {"user": "alice@example.com"},
                    "query_id": "q-42",
                    "columns": [
                        {
                            "instance": "prod-pg",
                            "database": "shop",
                            "schema": "public",
                            "table": "customers",
                            "column": "email",
                        },
                        {
                            "instance": "prod-pg",
                            "database": "shop",
                            "schema": "public",
                            "table": "customers",
                            "column": "id",
                        },
                    ],
                },
            )
        ],
    )
    def post(self, request: Request) -> HttpResponse:
        django_request = request._request
        try:
            body: bytes | None = django_request.body
        except RequestDataTooBig:
            body = None
        return answer_decisions(
            method=django_request.method or "",
            authorization=django_request.META.get("HTTP_AUTHORIZATION", ""),
            content_type=django_request.content_type or "",
            body=body,
        ).as_response()


class GuardOutcomeIn(StrictSerializer):
    """The data path's inference guard refused the query, or ran it anyway in audit mode."""

    outcome = serializers.ChoiceField(choices=["refused", "audited"])
    clause = serializers.CharField(max_length=200)
    message = serializers.CharField(max_length=2000, allow_blank=True, default="")


JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")


class ToolCallIn(StrictSerializer):
    """The agent's tool call that ran the query (an MCP tool's): its name and the JSON type of
    each argument, never an argument's value."""

    tool = serializers.RegexField(r"^[A-Za-z0-9_.:/-]{1,128}$", max_length=128)
    arguments = serializers.DictField(
        child=serializers.ChoiceField(choices=JSON_TYPES), required=False, default=dict
    )

    def validate_arguments(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 32:
            raise ValidationError("at most 32 arguments")
        for name in value:
            if not 1 <= len(name) <= 64 or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
                raise ValidationError(f"argument names are 1 to 64 printable characters, not {name[:70]!r}")
        return value


class AccessEventIn(StrictSerializer):
    principal = PrincipalIn()
    query_id = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    # Without an offset: UTC, as the SDK reads a naive datetime, whatever Veil's TIME_ZONE.
    occurred_at = serializers.DateTimeField(default_timezone=UTC)
    unmasked_columns = ColumnRefIn(many=True, required=False, default=list)
    masked_columns = ColumnRefIn(many=True, required=False, default=list)
    # The bound of the PositiveBigIntegerField it is stored in: beyond it the INSERT would fail (a 500).
    row_count = serializers.IntegerField(min_value=0, max_value=2**63 - 1)
    guard = GuardOutcomeIn(required=False)
    fingerprint = serializers.RegexField(
        r"^[0-9a-f]{8,64}$",
        required=False,
        default="",
        help_text="The statement's fingerprint: a hash of its parse tree without literals (pg_query's).",
    )
    tool_call = ToolCallIn(required=False)


class AccessEventsApi(APIView):
    """Report what was actually returned (a batch of queries). Stored append-only for audit."""

    authentication_classes = [ServiceTokenAuthentication]
    permission_classes = [ServiceTokenOnly]
    token_scope = Scope.ACCESS_EVENTS

    class AccessEventsInputSerializer(StrictSerializer):
        events = AccessEventIn(many=True, allow_empty=False)

        def get_fields(self) -> dict[str, serializers.Field]:
            fields = super().get_fields()
            fields["events"].max_length = settings.ACCESS_EVENTS_MAX_BATCH  # type: ignore[attr-defined]
            return fields

    class AccessEventsOutputSerializer(serializers.Serializer):
        accepted = serializers.IntegerField()

    @extend_schema(
        operation_id="access_events_create",
        request=AccessEventsInputSerializer,
        responses={202: AccessEventsOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        serializer = self.AccessEventsInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token: ApiToken = request.auth  # type: ignore[assignment]
        events = []
        for event in serializer.validated_data["events"]:
            principal = event["principal"]
            events.append(
                {
                    "occurred_at": event["occurred_at"],
                    "principal_type": PrincipalKind.of(principal, event.get("tool_call")),
                    "principal": principal.get("user") or principal.get("service_account"),
                    "query_id": event["query_id"],
                    "unmasked_columns": [_label(c) for c in event["unmasked_columns"]],
                    "masked_columns": [_label(c) for c in event["masked_columns"]],
                    "row_count": event["row_count"],
                    "fingerprint": event["fingerprint"],
                    "tool_call": event.get("tool_call") or {},
                }
            )
        assert token.service_account is not None  # the API authenticates service accounts' tokens only
        with transaction.atomic():
            accepted = record_access_events(service_account=token.service_account.name, events=events)
            record_guard_outcomes(
                service_account=token.service_account.name, events=serializer.validated_data["events"]
            )
        return Response({"accepted": accepted}, status=status.HTTP_202_ACCEPTED)


def _label(column: dict[str, str]) -> str:
    return ColumnKey(
        column["instance"], column["database"], column["schema"], column["table"], column["column"]
    ).label()
