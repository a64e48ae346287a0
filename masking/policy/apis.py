"""Policy-as-code API for pipelines: export, plan, apply, and the coverage and drift gates.

Service-account tokens need the `policy:write` scope. People (session) need `administer_policy`:
on at least one project to read, and on whatever a change touches to apply it. A person reads only
the global items and the items of projects they administer (the export leaves the others out; a
file they plan or apply keeps the others as they are and may not name them), and the coverage and
drift gates list a person only the columns of projects they administer. Errors use the one
error shape; a file's mistakes are reported under their document path (`rules[2].condition`).
"""

from __future__ import annotations

from typing import Any, cast

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import Channel
from identity.authentication import TokenScope
from identity.models import ApiToken, Scope, ServiceAccount, User
from identity.services import actor_for
from masking.checks import DEFAULT_SENSITIVE_TAGS, CoverageReport, coverage, default_min_level, drift
from masking.models import ClassificationLevel
from masking.policy.access import administers_any, columns_scope
from masking.policy.diff import plan_against_live
from masking.policy.document import (
    MAX_SOURCE_CHARS,
    SOURCE_FORMATS,
    DocumentError,
    dump_yaml,
    export_document,
    load_source,
)
from masking.policy.scope import confined_document, scoped_document
from masking.selectors import load_policy, read_epochs
from masking.services.policy_changes import NotAllowed, StalePolicy, policy_submit
from masking.services.versions import current_version
from shared.api import QuerySerializer, StrictSerializer
from shared.schema import error_response


class PolicyConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class PolicyApi(APIView):
    permission_classes = [TokenScope]
    token_scope = Scope.POLICY_WRITE

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if not isinstance(request.auth, ApiToken) and not administers_any(cast(User, request.user)):
            raise PermissionDenied("You do not administer masking policy in any project.")


class PolicySourceInputSerializer(StrictSerializer):
    policy = serializers.CharField(
        max_length=MAX_SOURCE_CHARS, trim_whitespace=False, help_text="The policy file's text"
    )
    source_format = serializers.ChoiceField(
        choices=SOURCE_FORMATS, default="veil", help_text="veil (YAML) or bytebase (an export)"
    )


def _projects(request: Request) -> set[str] | None:
    """The projects whose items the caller reads and sends: a person's (`columns_scope`), or every
    project (None) for a `policy:write` token, which a pipeline holds for the whole policy."""
    return None if isinstance(request.auth, ApiToken) else columns_scope(cast(User, request.user))


def _document(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    try:
        document = load_source(data["policy"], data["source_format"])
        return confined_document(document, _projects(request), export_document())
    except DocumentError as error:
        raise ValidationError({error.path: [error.message]}) from error


class PolicyPlanOutputSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="The live policy version the plan was made against")
    has_changes = serializers.BooleanField()
    summary = serializers.DictField(child=serializers.IntegerField())
    changes = serializers.ListField(child=serializers.DictField())
    warnings = serializers.ListField(child=serializers.CharField())
    unmanaged_sections = serializers.ListField(child=serializers.CharField())
    projects = serializers.ListField(child=serializers.CharField())
    text = serializers.CharField(help_text="The plan as `manage.py policy plan` prints it")


class PolicyExportApi(PolicyApi):
    class PolicyExportOutputSerializer(serializers.Serializer):
        version = serializers.IntegerField()
        yaml = serializers.CharField()

    @extend_schema(operation_id="policy_export", responses={200: PolicyExportOutputSerializer})
    def get(self, request: Request) -> Response:
        """The live policy as YAML, in the stable order `manage.py policy export` writes: for a
        person, the global items and those of the projects they administer."""
        document = scoped_document(export_document(), _projects(request))
        return Response({"version": current_version(), "yaml": dump_yaml(document)})


class PolicyPlanApi(PolicyApi):
    @extend_schema(
        operation_id="policy_plan",
        request=PolicySourceInputSerializer,
        responses={200: PolicyPlanOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        """What applying the file would change; nothing is written. `has_changes` is the CI signal."""
        serializer = PolicySourceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            plan = plan_against_live(_document(request, serializer.validated_data))
        except DocumentError as error:
            raise ValidationError({error.path: [error.message]}) from error
        return Response({"version": current_version(), **plan.as_json(), "text": plan.text()})


class PolicyApplyApi(PolicyApi):
    class PolicyApplyInputSerializer(PolicySourceInputSerializer):
        message = serializers.CharField(max_length=2000, help_text="Why: recorded on the version")
        expected_version = serializers.IntegerField(
            required=False, help_text="Refuse (409) unless the live policy is still at this version"
        )

    class PolicyApplyOutputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["applied", "pending", "unchanged"])
        version = serializers.IntegerField(allow_null=True)
        change = serializers.IntegerField(allow_null=True, help_text="Pending change id (two-person rule)")
        plan = PolicyPlanOutputSerializer()

    @extend_schema(
        operation_id="policy_apply",
        request=PolicyApplyInputSerializer,
        responses={
            200: PolicyApplyOutputSerializer,
            202: PolicyApplyOutputSerializer,
            409: error_response("The live policy is no longer at `expected_version`: plan again."),
        },
    )
    def post(self, request: Request) -> Response:
        """Apply the file in one transaction as one version, or hold it for a second person (202)."""
        serializer = self.PolicyApplyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        document = _document(request, data)
        is_token = isinstance(request.auth, ApiToken)
        principal = cast("User | ServiceAccount", request.user)
        try:
            submission = policy_submit(
                document=document,
                message=data["message"],
                actor=actor_for(principal),
                channel=Channel.API,
                author=None if isinstance(principal, ServiceAccount) else principal,
                authorize=not is_token,
                base_version=data.get("expected_version"),
            )
        except DocumentError as error:
            raise ValidationError({error.path: [error.message]}) from error
        except StalePolicy as stale:
            raise PolicyConflict(str(stale)) from stale
        except NotAllowed as refusal:
            raise PermissionDenied(str(refusal)) from refusal
        plan = submission.plan
        body = {
            "status": submission.status,
            "version": submission.version.number if submission.version else current_version(),
            "change": submission.change.pk if submission.change else None,
            "plan": {"version": current_version(), **plan.as_json(), "text": plan.text()},
        }
        return Response(body, status=status.HTTP_202_ACCEPTED if submission.status == "pending" else 200)


def _csv_filter(help_text: str) -> serializers.CharField:
    return serializers.CharField(required=False, allow_blank=True, max_length=1000, help_text=help_text)


class PolicyCoverageApi(PolicyApi):
    class PolicyCoverageQuery(QuerySerializer):
        min_level = serializers.IntegerField(
            required=False,
            min_value=min(ClassificationLevel.values),
            max_value=max(ClassificationLevel.values),
            help_text="Hold columns classified at this level or above. Default: MASK_CLASSIFIED_FROM_LEVEL",
        )
        sensitive_tags = _csv_filter("Comma-separated; default sensitive,pii")
        require_rule = serializers.BooleanField(required=False, default=False)
        environment = _csv_filter("Comma-separated environments; default all")

    class PolicyCoverageOutputSerializer(serializers.Serializer):
        ok = serializers.BooleanField()
        uncovered = serializers.ListField(child=serializers.DictField())
        unreviewed = serializers.ListField(child=serializers.DictField())

    @extend_schema(
        operation_id="policy_coverage",
        parameters=[PolicyCoverageQuery],
        responses={200: PolicyCoverageOutputSerializer},
    )
    def get(self, request: Request) -> Response:
        """`manage.py masking check` over HTTP; `ok` is false when a sensitive column is unmasked."""
        query = self.PolicyCoverageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        policy = load_policy(read_epochs().policy)
        found = coverage(
            policy,
            min_level=params.get("min_level", default_min_level(policy)),
            sensitive_tags=_csv(params.get("sensitive_tags")) or DEFAULT_SENSITIVE_TAGS,
            require_rule=params["require_rule"],
            environments=_csv(params.get("environment")),
            now=timezone.now().timestamp(),
        )
        mine = _visible_projects(request)
        report = CoverageReport(
            uncovered=[f for f in found.uncovered if mine is None or f.column.project in mine],
            unreviewed=[f for f in found.unreviewed if mine is None or f.column.project in mine],
        )
        return Response(report.as_json())


class PolicyDriftApi(PolicyApi):
    class PolicyDriftQuery(QuerySerializer):
        environments = _csv_filter("Comma-separated; default all")

    class PolicyDriftOutputSerializer(serializers.Serializer):
        ok = serializers.BooleanField()
        drift = serializers.ListField(child=serializers.DictField())

    @extend_schema(
        operation_id="policy_drift",
        parameters=[PolicyDriftQuery],
        responses={200: PolicyDriftOutputSerializer},
    )
    def get(self, request: Request) -> Response:
        """`manage.py masking drift` over HTTP; `ok` is false when environments disagree."""
        query = self.PolicyDriftQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = drift(
            load_policy(read_epochs().policy),
            environments=_csv(query.validated_data.get("environments")),
            now=timezone.now().timestamp(),
        )
        mine = _visible_projects(request)
        if mine is not None:
            found = [d for d in found if any(e.column.project in mine for e in d.entries)]
        return Response({"ok": not found, "drift": [d.as_json() for d in found]})


def _visible_projects(request: Request) -> set[str] | None:
    """Projects whose columns the gates may list for this caller (None: every project).

    A `policy:write` token is a pipeline's, and a person holding the permission globally
    administers everything; anyone else sees the projects they administer, as on the Checks page:
    the gates name catalog columns, which a person outside a project does not see."""
    return None if isinstance(request.auth, ApiToken) else columns_scope(cast(User, request.user))


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]
