"""The JIT API under /api/v1/: one view per operation, each object-permission checked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import Channel
from identity.authentication import TokenScope
from identity.models import ApiToken, Scope, ServiceAccount, User
from jitaccess.errors import NotAllowed, RequestError
from jitaccess.models import AccessRequest
from jitaccess.selectors.requests import requests_visible_to
from jitaccess.selectors.scopes import Scope as RequestScope
from jitaccess.services.breakglass import breakglass_review, breakglass_take
from jitaccess.services.grants import grant_end
from jitaccess.services.requests import request_approve, request_cancel, request_create, request_deny
from jitaccess.states import Action, InvalidTransition, State
from jitaccess.tickets import TICKET_MAX_CHARS
from masking.models import Database
from shared.api import QuerySerializer, StrictSerializer
from shared.schema import error_response


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class RequestOut(serializers.ModelSerializer):
    ref = serializers.CharField()
    project = serializers.CharField(source="project.key")
    requester = serializers.CharField(source="requester.username")
    service_account = serializers.CharField(source="service_account.name", allow_null=True, default=None)
    instance = serializers.CharField(source="database.instance.key")
    database = serializers.CharField(source="database.name")
    schema = serializers.CharField(source="schema_name", allow_null=True)
    table = serializers.CharField(source="table_name", allow_null=True)
    columns = serializers.ListField(source="column_names", child=serializers.CharField())
    duration_minutes = serializers.SerializerMethodField()
    approvals = serializers.SerializerMethodField()

    class Meta:
        model = AccessRequest
        fields = [
            "id",
            "ref",
            "project",
            "requester",
            "service_account",
            "instance",
            "database",
            "schema",
            "table",
            "columns",
            "classification_level",
            "duration_minutes",
            "reason",
            "ticket",
            "ticket_url",
            "ticket_title",
            "ticket_status",
            "state",
            "policy_title",
            "approvals_required",
            "approvals",
            "created_at",
            "pending_until",
            "decided_at",
            "expires_at",
            "ended_at",
            "deny_reason",
            "is_breakglass",
            "reviewed_at",
        ]

    def get_duration_minutes(self, obj: AccessRequest) -> int:
        return int(obj.duration.total_seconds() // 60)

    def get_approvals(self, obj: AccessRequest) -> list[str]:
        return [a.approver.username for a in obj.approvals.all()]


class ScopeIn(StrictSerializer):
    instance = serializers.SlugField(max_length=64)
    database = serializers.CharField(max_length=128)
    schema = serializers.CharField(
        max_length=128, required=False, allow_blank=True, allow_null=True, default=None
    )
    table = serializers.CharField(max_length=128, required=False, allow_null=True, default=None)
    columns = serializers.ListField(
        child=serializers.CharField(max_length=128), required=False, default=list, max_length=500
    )
    duration_minutes = serializers.IntegerField(min_value=1, max_value=60 * 24 * 365)
    reason = serializers.CharField(max_length=2000)


def _scope_from(data: dict[str, Any]) -> RequestScope:
    database = (
        Database.objects.select_related("project", "instance")
        .filter(instance__key=data["instance"], name=data["database"])
        .first()
    )
    if database is None:
        raise ValidationError(
            {"database": [f"no database {data['database']!r} on instance {data['instance']!r}"]}
        )
    return RequestScope(database, data["schema"], data["table"], tuple(data["columns"]))


class JitApiView(APIView):
    """Maps the service errors onto the API's one error shape."""

    permission_classes = [TokenScope]
    token_scope = Scope.REQUESTS

    def person(self, request: Request) -> User:
        """The accountable person: the signed-in user, or the owner of the calling agent's account."""
        if isinstance(request.auth, ApiToken):
            account = request.auth.service_account
            assert account is not None  # the API authenticates service accounts' tokens only
            owner = account.owner
            if owner is None:
                raise PermissionDenied("This service account has no owner to act for.")
            if not owner.is_active:
                raise PermissionDenied("This service account's owner is deactivated: nobody to act for.")
            return owner
        return request.user  # type: ignore[return-value]

    def visible(self, request: Request) -> QuerySet[AccessRequest]:
        """The requests the caller may read and act on: a person's as `selectors` says; an agent's
        token (scope `requests`, to ask on its owner's behalf) only the requests made for its own
        service account, not everything its owner may see (an approver's, an auditor's projects)."""
        queryset = requests_visible_to(self.person(request))
        if isinstance(request.auth, ApiToken):
            queryset = queryset.filter(service_account=request.auth.service_account)
        return queryset

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, RequestError):
            exc = ValidationError({exc.field: [exc.message]})
        elif isinstance(exc, NotAllowed):
            exc = PermissionDenied(str(exc))
        elif isinstance(exc, InvalidTransition):
            exc = Conflict(f"{exc} (state: {exc.state})")
        elif isinstance(exc, AccessRequest.DoesNotExist):
            exc = NotFound("No such request.")
        return super().handle_exception(exc)


class RequestListCreateApi(JitApiView):
    class RequestCreateInputSerializer(ScopeIn):
        ticket = serializers.CharField(
            max_length=TICKET_MAX_CHARS,
            required=False,
            allow_blank=True,
            default="",
            help_text="A link to the ticket, its issue key (OPS-123), or what the project's pattern accepts",
        )
        ticket_url = serializers.URLField(
            required=False, allow_blank=True, default="", help_text="Older name of `ticket`, for a link"
        )
        extends = serializers.IntegerField(required=False, allow_null=True, default=None)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if attrs["ticket"] and attrs["ticket_url"]:
                raise ValidationError({"ticket": ["give the ticket once: ticket or ticket_url, not both"]})
            attrs["ticket"] = attrs["ticket"] or attrs["ticket_url"]
            return attrs

    class RequestListQuery(QuerySerializer):
        state = serializers.ChoiceField(choices=State.choices, required=False, allow_blank=True)

    @extend_schema(
        operation_id="requests_list", parameters=[RequestListQuery], responses={200: RequestOut(many=True)}
    )
    def get(self, request: Request) -> Response:
        query = self.RequestListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        queryset = self.visible(request).prefetch_related("approvals__approver")
        if state := query.validated_data.get("state"):
            queryset = queryset.filter(state=state)
        return Response(RequestOut(queryset[:200], many=True).data)

    @extend_schema(
        operation_id="requests_create", request=RequestCreateInputSerializer, responses={201: RequestOut}
    )
    def post(self, request: Request) -> Response:
        serializer = self.RequestCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        person = self.person(request)
        extends = None
        if data["extends"]:
            extends = self.visible(request).filter(pk=data["extends"]).first()
            if extends is None:
                raise ValidationError({"extends": [f"no request {data['extends']} that you can see"]})
        agent: ServiceAccount | None = (
            request.auth.service_account if isinstance(request.auth, ApiToken) else None
        )
        created = request_create(
            requester=person,
            scope=_scope_from(data),
            duration=timedelta(minutes=data["duration_minutes"]),
            reason=data["reason"],
            ticket=data["ticket"],
            service_account=agent,
            extends=extends,
            channel=Channel.API,
        )
        return Response(RequestOut(created).data, status=status.HTTP_201_CREATED)


class RequestDetailApi(JitApiView):
    @extend_schema(operation_id="requests_retrieve", responses={200: RequestOut})
    def get(self, request: Request, request_id: int) -> Response:
        return Response(RequestOut(self.visible(request).get(pk=request_id)).data)


API_ACTIONS = ["approve", "deny", "cancel", Action.REVOKE.value, Action.RELINQUISH.value, "review"]


class RequestActionApi(JitApiView):
    """approve, deny (reason), cancel, revoke (optional reason), relinquish, review (break-glass, notes)."""

    class RequestActionInputSerializer(StrictSerializer):
        reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
        notes = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

    @extend_schema(
        operation_id="requests_action",
        parameters=[OpenApiParameter("action", str, OpenApiParameter.PATH, enum=API_ACTIONS)],
        request=RequestActionInputSerializer,
        responses={
            200: RequestOut,
            404: error_response("No such request that you can see, or no such action."),
            409: error_response(
                "The request's state does not allow this action (`message` names the state)."
            ),
        },
    )
    def post(self, request: Request, request_id: int, action: str) -> Response:
        serializer = self.RequestActionInputSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        if isinstance(request.auth, ApiToken) and action != "cancel":
            raise PermissionDenied("Agents may create and cancel requests; decisions are made by people.")
        person = self.person(request)
        target = self.visible(request).get(pk=request_id)
        data = serializer.validated_data
        if action == "approve":
            result = request_approve(request_id=target.pk, approver=person, channel=Channel.API)
        elif action == "deny":
            result = request_deny(
                request_id=target.pk, approver=person, reason=data["reason"], channel=Channel.API
            )
        elif action == "cancel":
            result = request_cancel(request_id=target.pk, requester=person, channel=Channel.API)
        elif action in (Action.REVOKE, Action.RELINQUISH):
            result = grant_end(
                request_id=target.pk,
                user=person,
                action=action,
                channel=Channel.API,
                reason=data["reason"] if action == Action.REVOKE else "",
            )
        elif action == "review":
            result = breakglass_review(
                request_id=target.pk, reviewer=person, notes=data["notes"], channel=Channel.API
            )
        else:
            raise NotFound(f"Unknown action {action!r}.")
        result.refresh_from_db()
        return Response(RequestOut(result).data)


class BreakGlassApi(JitApiView):
    @extend_schema(operation_id="breakglass_create", request=ScopeIn, responses={201: RequestOut})
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, ApiToken):
            raise PermissionDenied("Break-glass is for people, not agents.")
        serializer = ScopeIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        taken = breakglass_take(
            requester=self.person(request),
            scope=_scope_from(data),
            duration=timedelta(minutes=data["duration_minutes"]),
            reason=data["reason"],
            channel=Channel.API,
        )
        return Response(RequestOut(taken).data, status=status.HTTP_201_CREATED)
