"""The query-login API: veil-proxy asks whether a database login is a person's live token."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identity.authentication import ServiceTokenAuthentication, ServiceTokenOnly
from identity.models import ApiToken, Scope
from identity.query_logins import QUERY_LOGIN_TTL_S, LoginFailure, query_login_check
from shared.api import StrictSerializer


class LoginPrincipalOut(serializers.Serializer):
    user = serializers.CharField(help_text="Put this in decision requests: {'principal': {'user': ...}}")


class QueryLoginsApi(APIView):
    """Check the user name and password a database client gave veil-proxy.

    The password is a person's access token with the scope `query`. A valid login answers the name
    the proxy must use as the principal of its decisions, and how long it may trust the answer; a
    refused one answers why (the proxy tells the client only 28P01). Either way the answer is 200:
    a refusal is an answer, not an error. Needs a service token with the scope `decisions`.
    """

    authentication_classes = [ServiceTokenAuthentication]
    permission_classes = [ServiceTokenOnly]
    token_scope = Scope.DECISIONS

    class QueryLoginInputSerializer(StrictSerializer):
        login = serializers.CharField(
            max_length=254, trim_whitespace=False, help_text="The user name: email or username"
        )
        token = serializers.CharField(
            max_length=512, trim_whitespace=False, help_text="The password: a `veil_` access token"
        )
        instance = serializers.CharField(max_length=128, help_text="The proxy's instance, e.g. prod-pg")
        database = serializers.CharField(max_length=128)
        client_addr = serializers.IPAddressField(
            required=False, allow_null=True, default=None, help_text="The client's address (none on a socket)"
        )

    class QueryLoginOutputSerializer(serializers.Serializer):
        valid = serializers.BooleanField()
        principal = LoginPrincipalOut(required=False)
        ttl_s = serializers.IntegerField(
            required=False, help_text=f"Trust a valid answer this long at most (<= {QUERY_LOGIN_TTL_S})"
        )
        reason = serializers.ChoiceField(choices=[str(f) for f in LoginFailure], required=False)

    @extend_schema(
        operation_id="query_logins_create",
        request=QueryLoginInputSerializer,
        responses={200: QueryLoginOutputSerializer},
        examples=[
            OpenApiExample(
                "A person's login",
                request_only=True,
                value={
                    "login": "alice@example.com",
                    "token": "veil_0a1b2c3d4e5f_secret",
                    "instance": "prod-pg",
                    "database": "shop",
                    "client_addr": "10.0.0.7",
                },
            ),
            OpenApiExample(
                "Valid",
                response_only=True,
                value={"valid": True, "principal": {"user": "alice@example.com"}, "ttl_s": 60},
            ),
            OpenApiExample("Refused", response_only=True, value={"valid": False, "reason": "revoked"}),
        ],
    )
    def post(self, request: Request) -> Response:
        serializer = self.QueryLoginInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = serializer.validated_data
        proxy_token: ApiToken = request.auth  # type: ignore[assignment]
        answer = query_login_check(
            login=data["login"],
            raw_token=data["token"],
            instance=data["instance"],
            database=data["database"],
            client_addr=data["client_addr"],
            proxy=proxy_token.service_account,  # type: ignore[arg-type]
        )
        if answer.valid:
            body: dict[str, Any] = {
                "valid": True,
                "principal": {"user": answer.principal_user},
                "ttl_s": answer.ttl_s,
            }
        else:
            body = {"valid": False, "reason": answer.reason}
        return Response(body)
