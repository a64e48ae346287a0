"""What the data path asks Veil about a target database besides decisions: its settings.

`GET /api/v1/data-path/settings?instance=prod-pg&database=shop` answers the project the
database belongs to and its inference guard (`refuse` or `audit`). The adapter and veil-proxy
read it once a minute per target; any failure, or a database Veil does not know, means `refuse`.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identity.authentication import ServiceTokenAuthentication, ServiceTokenOnly
from identity.models import Scope
from masking.models import Database, Project
from shared.api import QuerySerializer

SETTINGS_TTL_S = 60


class DataPathSettingsApi(APIView):
    """The settings a data-access layer applies to one database of Veil's catalog."""

    authentication_classes = [ServiceTokenAuthentication]
    permission_classes = [ServiceTokenOnly]
    token_scope = Scope.DECISIONS

    class InputSerializer(QuerySerializer):
        instance = serializers.CharField(max_length=128, help_text="The instance's key, e.g. prod-pg")
        database = serializers.CharField(max_length=128, help_text="The database's name, e.g. shop")

    class OutputSerializer(serializers.Serializer):
        instance = serializers.CharField()
        database = serializers.CharField()
        project = serializers.CharField(
            allow_null=True, help_text="null: Veil's catalog has no such database"
        )
        inference_guard = serializers.ChoiceField(choices=Project.InferenceGuard.choices)
        ttl_s = serializers.IntegerField(help_text="How long the answer may be reused")

    @extend_schema(
        operation_id="data_path_settings",
        parameters=[InputSerializer],
        responses={200: OutputSerializer},
    )
    def get(self, request: Request) -> Response:
        query = self.InputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        instance, name = query.validated_data["instance"], query.validated_data["database"]
        database = (
            Database.objects.filter(instance__key=instance, name=name).select_related("project").first()
        )
        project = database.project if database is not None else None
        return Response(
            {
                "instance": instance,
                "database": name,
                "project": project.key if project is not None else None,
                "inference_guard": project.inference_guard
                if project is not None
                else Project.InferenceGuard.REFUSE,
                "ttl_s": SETTINGS_TTL_S,
            }
        )
